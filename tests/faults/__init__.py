"""The fault suite (issue 13 item 5): what a user sees when a run is killed, a source or the model
fails, the disk fills, a file is garbled, the data dir is read-only, or two runs collide — the exit
status, the one line on stderr, and that earlier reports and the run store are intact.

Runs go through the real CLI in their own processes (tests/faults/harness.py), against loopback
servers for arXiv and the model (tests/arxiv_server.py, tests/openai_server.py)."""
