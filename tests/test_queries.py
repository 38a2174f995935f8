"""Queries per assertion: keyphrases without stop words, years or IDs; a negated form for counter-evidence."""

from __future__ import annotations

from agent.queries import keyphrases, negate, queries_for
from tools.terms import search_words


def test_keyphrases_drop_stop_words_years_and_identifiers():
    phrases = keyphrases("In 2023 arXiv:2305.17493 showed that the tails of the distribution vanish first (2023).")
    words = " ".join(phrases).split()
    assert "tails" in words and "distribution" in words
    assert not {"2023", "arxiv", "the", "of", "that", "2305.17493"} & set(words)


def test_negation_flips_the_assertion():
    assert negate("Collapse is NOT simply a function of the ratio") == "Collapse is simply a function of the ratio"
    assert negate("Retrieval can improve factuality") == "Retrieval can not improve factuality"
    assert negate("RLHF reduces output diversity (2023, arXiv:2310.06452).") == "RLHF raises output diversity"
    assert negate("Pretraining on code improves reasoning") == "Pretraining on code worsens reasoning"
    assert negate("Induction heads account for most in-context learning") == (
        "No evidence that induction heads account for most in-context learning")


def test_every_query_says_why_it_was_issued():
    queries = queries_for("Induction heads account for most in-context learning")
    assert len(queries) == 2 and all(q.why for q in queries)
    assert "induction heads" in queries[0].text and "counter-evidence" in queries[1].why


def test_a_fragment_is_searched_and_ranked_with_its_claims_context():
    claim = "Sparse autoencoders recover interpretable features in small transformers, but dead latents vanish first."
    keyphrase, counter = queries_for("dead latents vanish first", claim)
    assert "dead latents vanish" in keyphrase.text and "sparse autoencoders recover" in keyphrase.text
    assert keyphrase.rank_by.startswith("dead latents vanish first (") and "sparse autoencoders recover" in keyphrase.rank_by
    assert counter.rank_by.startswith("dead latents persist first")
    # an assertion that already says everything its claim says gets no context
    [alone, _] = queries_for(claim, claim)
    assert alone.rank_by == claim


def test_search_terms_leave_out_stop_words_years_identifiers_and_citation_furniture():
    words = search_words("In 2025, and per arXiv:2305.17493, Shumailov et al. show that RL reduces model-generated tails")
    assert words == ["shumailov", "rl", "reduces", "model-generated", "tails"]
    assert search_words("the and of 2025") == [], "nothing to search: no query is sent"
