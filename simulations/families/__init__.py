"""One module per model family; each exposes `simulate(cells, generations, seeds, device, seed, **params)`.

The returned list holds, per cell in order, metric name -> float64 CPU tensor [seeds, generations + 1]:
entry 0 describes the truth, entry g the model fit at generation g (generation 1: real data only).
All cells and seeds of one call run as one batched tensor program (batch dimension cells x seeds).
"""
