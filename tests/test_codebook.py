from au.codebook import CLASS_NAMES, get_codebook


def test_canonical_class_order():
    assert CLASS_NAMES == ("Neutral", "Happiness", "Surprise", "Fear", "Anger", "Disgust", "Sadness")


def test_paper_codebook_matches_fig2():
    cb = get_codebook("paper")
    assert cb.aus("Neutral") == ()
    assert cb.aus("Happiness") == (6, 12, 25)
    assert cb.aus("Surprise") == (1, 2, 5, 26, 27)
    assert cb.aus("Fear") == (1, 2, 4, 5, 20, 25, 26, 27)
    assert cb.aus("Anger") == (4, 5, 7, 10, 17, 23, 24, 25, 26)
    assert cb.aus("Disgust") == (9, 10, 16, 17, 25, 26)
    assert cb.aus("Sadness") == (1, 4, 6, 15, 17)


def test_reference_variant_differs_only_in_disgust_au5():
    paper, ref = get_codebook("paper"), get_codebook("reference")
    for name in CLASS_NAMES:
        if name != "Disgust":
            assert paper.aus(name) == ref.aus(name)
    assert ref.aus("Disgust") == (5, 9, 16, 17, 25, 26)


def test_class_au_matrix():
    cb = get_codebook("paper")
    m = cb.class_au_matrix(cb.used_aus())
    assert m.shape == (7, len(cb.used_aus()))
    assert m[0].sum() == 0
    assert m[1].sum() == 3
