"""Prompt encoding, the text path between the pair's conditions, and per-frame prompt overrides."""
import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings as hsettings, strategies as st

from helpers import slerp_reference as slerp
from interp.models.load import load_bundle
from interp.settings import FrameEdit, Settings
from interp.text import (TextConditions, TextPath, encode_prompt, plain_conditions, tokenize)
from interp.models.tokenizer import build_tokenizer

POSITIONS = [i / 16 for i in range(17)]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def bundle():
    return load_bundle("tiny-sd15", controlnet=None)


@pytest.fixture(scope="module")
def conds(bundle):
    return plain_conditions(bundle, Settings(prompt="a red circle", prompt_b="a blue square",
                                             negative_prompt="blurry"))


def _rows(bundle) -> int:
    return bundle.counter.snapshot()["rows"]["text_encoder"]


def _frames(path, n=len(POSITIONS)):
    return [path.at(i) for i in range(n)]


def _close(tensor, expected) -> bool:
    """A float32 condition equals a float64 reference up to float32 round-off (two nested slerps)."""
    return np.allclose(tensor.double().numpy(), expected, rtol=1e-6, atol=1e-6)


def test_the_reference_slerp_by_hand():
    # unit vectors 90 degrees apart: halfway is 45 degrees, a third of the way 30 degrees; norms 2 and 2
    assert np.allclose(slerp([2.0, 0.0], [0.0, 2.0], 0.5), [2 ** 0.5, 2 ** 0.5])
    assert np.allclose(slerp([1.0, 0.0], [0.0, 1.0], 1 / 3), [3 ** 0.5 / 2, 0.5])
    assert np.allclose(slerp([1.0, 2.0], [2.0, 4.0], 0.25), [1.25, 2.5])   # parallel: linear


def _changed(before, after) -> list:
    """Indices whose (cond, uncond) differ in any bit."""
    return [i for i, (x, y) in enumerate(zip(before, after))
            if not (torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]))]


# -- tokenizing -----------------------------------------------------------------------------
def test_short_prompt_fits_and_is_padded(tok):
    ids, cut = tokenize(tok, "a red circle")
    assert ids.shape == (1, 77) and cut == []
    assert ids[0, 0] == tok.bos_token_id and ids[0, 4] == tok.eos_token_id
    assert (ids[0, 5:] == tok.pad_token_id).all()


def test_empty_prompt_is_bos_eos_padding(tok):
    ids, cut = tokenize(tok, "")
    assert cut == [] and ids[0, 0] == tok.bos_token_id and (ids[0, 1:] == tok.eos_token_id).all()


def test_long_prompt_reports_the_cut_words(tok):
    assert len(tok("cat red green blue yellow").input_ids) == 7  # one token per word
    # 73 + 4 words = 77 tokens, 75 fit between bos and eos: the last two are cut
    ids, cut = tokenize(tok, "cat " * 73 + "red green Blue yellow")
    assert ids.shape == (1, 77) and ids[0, -1] == tok.eos_token_id
    assert cut == ["Blue", "yellow"]
    # a word split across the boundary (word79 = 3 tokens) counts as cut
    assert tokenize(tok, "cat " * 74 + "word79")[1] == ["word79"]
    assert tokenize(tok, "cat " * 75)[1] == []
    assert tokenize(tok, "cat " * 76)[1] == ["cat"]


@hsettings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["cat", "{prompt}", "${HOME}", "%s", "(red:1.5)", "word79", "é", "a,b"]),
                max_size=60))
def test_prompt_text_is_data(tok, words):
    prompt = " ".join(words)
    ids, cut = tokenize(tok, prompt)
    expected = tok(prompt, padding="max_length", max_length=77, truncation=True).input_ids
    assert ids[0].tolist() == expected
    assert cut == words[len(words) - len(cut):]  # a suffix of the words as typed
    assert (cut == []) == (len(tok(prompt, verbose=False).input_ids) <= 77)


def test_tokenize_rejects_non_strings(tok):
    with pytest.raises(TypeError, match="prompt"):
        tokenize(tok, None)


# -- encoding ---------------------------------------------------------------------------------
def test_encode_prompt_shape_and_warning(bundle, caplog):
    before = _rows(bundle)
    with caplog.at_level(logging.WARNING, logger="interp.text"):
        emb, cut = encode_prompt(bundle, "cat " * 75 + "zebra")
    assert emb.shape == (1, 77, bundle.text_encoder.config.hidden_size) and not emb.requires_grad
    assert cut == ["zebra"] and "zebra" in caplog.text and _rows(bundle) - before == 1
    empty, cut = encode_prompt(bundle, "")
    assert empty.shape == emb.shape and cut == [] and torch.isfinite(empty).all()


@pytest.mark.parametrize("prompt, prompt_b, negative, calls", [
    ("a cat", None, "", 2), ("a cat", "a cat", "a cat", 1), ("a cat", "a dog", "", 3),
    ("", None, "", 1)])
def test_plain_conditions_encode_each_distinct_prompt_once(prompt, prompt_b, negative, calls):
    bundle = load_bundle("tiny-sd15", controlnet=None)     # fresh: nothing encoded yet
    before = _rows(bundle)
    c = plain_conditions(bundle, Settings(prompt=prompt, prompt_b=prompt_b, negative_prompt=negative))
    assert _rows(bundle) - before == calls
    assert torch.equal(c.cond_a, encode_prompt(bundle, prompt)[0])
    assert torch.equal(c.uncond, encode_prompt(bundle, negative)[0])
    assert torch.equal(c.cond_a, c.cond_b) == (prompt_b in (None, prompt))


def test_text_conditions_check_shapes(conds):
    with pytest.raises(ValueError, match="TextConditions"):
        TextConditions(conds.cond_a, conds.cond_b[:, :10], conds.uncond)


# -- the path without edits -------------------------------------------------------------------
def test_path_is_slerp_at_the_global_position(bundle, conds):
    frames = _frames(TextPath(bundle, conds, POSITIONS, {}))
    assert torch.equal(frames[0][0], conds.cond_a) and torch.equal(frames[-1][0], conds.cond_b)
    for p, (cond, uncond) in zip(POSITIONS[1:-1], frames[1:-1]):
        assert _close(cond, slerp(conds.cond_a, conds.cond_b, p))
    assert all(torch.equal(uncond, conds.uncond) for _, uncond in frames)
    norms = [float(c.norm()) for c, _ in frames]  # slerp keeps the norm between the ends'
    assert min(norms) >= min(norms[0], norms[-1]) - 1e-3


def test_equal_conditions_give_that_condition_everywhere(bundle, conds):
    same = TextConditions(conds.cond_a, conds.cond_a, conds.uncond)
    assert all(torch.equal(c, conds.cond_a) for c, _ in _frames(TextPath(bundle, same, POSITIONS)))


def test_edits_without_effect_change_nothing(bundle, conds):
    plain = _frames(TextPath(bundle, conds, POSITIONS, {}))
    before = _rows(bundle)
    idle = {3: FrameEdit(prompt="a green star", strength=0.0),
            5: FrameEdit(prompt="a green star", negative_prompt="dark", strength=0.0, keyframe=True),
            8: FrameEdit(seed=7, noise=0.4), 9: FrameEdit(keyframe=True)}
    assert _changed(plain, _frames(TextPath(bundle, conds, POSITIONS, idle))) == []
    assert _rows(bundle) == before  # nothing even encoded


# -- overrides --------------------------------------------------------------------------------
def test_strength_one_gives_exactly_the_override(bundle, conds):
    plain = _frames(TextPath(bundle, conds, POSITIONS, {}))
    star, dark = encode_prompt(bundle, "a green star")[0], encode_prompt(bundle, "dark")[0]
    path = TextPath(bundle, conds, POSITIONS, {6: FrameEdit(prompt="a green star")})
    frames = _frames(path)
    assert torch.equal(frames[6][0], star) and torch.equal(frames[6][1], conds.uncond)
    assert _changed(plain, frames) == [6]
    neg = _frames(TextPath(bundle, conds, POSITIONS, {6: FrameEdit(negative_prompt="dark")}))
    assert torch.equal(neg[6][1], dark) and torch.equal(neg[6][0], plain[6][0])
    assert _changed(plain, neg) == [6]


def test_partial_strength_blends_from_the_interpolated_condition(bundle, conds):
    star = encode_prompt(bundle, "a green star")[0]
    cond, _ = TextPath(bundle, conds, POSITIONS, {4: FrameEdit(prompt="a green star",
                                                                strength=0.25)}).at(4)
    expected = slerp(slerp(conds.cond_a, conds.cond_b, 0.25), star, 0.25)
    assert _close(cond, expected)


def test_each_override_prompt_is_encoded_once_per_bundle(conds):
    bundle = load_bundle("tiny-sd15", controlnet=None)     # fresh: nothing encoded yet
    before = _rows(bundle)
    edits = {i: FrameEdit(prompt="a green star", negative_prompt="dark") for i in (2, 5, 9)}
    edits[11] = FrameEdit(prompt="dark", keyframe=True)
    TextPath(bundle, conds, POSITIONS, edits)
    assert _rows(bundle) - before == 2
    TextPath(bundle, conds, POSITIONS, edits)                # a second render: nothing re-encoded
    assert _rows(bundle) - before == 2


def test_keyframe_changes_exactly_the_frames_between_its_neighbours(bundle, conds):
    star = encode_prompt(bundle, "a green star")[0]
    two = {4: FrameEdit(prompt="a red square", keyframe=True),
           12: FrameEdit(prompt="a blue circle", keyframe=True)}
    before = _frames(TextPath(bundle, conds, POSITIONS, two))
    path = TextPath(bundle, conds, POSITIONS, {**two, 8: FrameEdit(prompt="a green star",
                                                                   keyframe=True)})
    after = _frames(path)
    assert path.anchors == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert _changed(before, after) == [5, 6, 7, 8, 9, 10, 11]
    assert torch.equal(after[8][0], star)
    square = encode_prompt(bundle, "a red square")[0]
    assert torch.equal(before[4][0], square)              # a keyframe at strength 1: its prompt
    assert _close(after[6][0], slerp(square, star, 0.5))  # local fraction (0.375-0.25)/0.25
    # a single keyframe: everything but the ends changes, in two independent segments
    one = _frames(TextPath(bundle, conds, POSITIONS, {8: FrameEdit(prompt="a green star",
                                                                   keyframe=True)}))
    plain = _frames(TextPath(bundle, conds, POSITIONS, {}))
    assert _changed(plain, one) == list(range(1, 16))
    assert _close(one[4][0], slerp(conds.cond_a, star, 0.5))


def test_partial_keyframe_anchors_the_blended_condition(bundle, conds):
    star = encode_prompt(bundle, "a green star")[0]
    path = TextPath(bundle, conds, POSITIONS, {8: FrameEdit(prompt="a green star", strength=0.5,
                                                            keyframe=True)})
    anchor = slerp(slerp(conds.cond_a, conds.cond_b, 0.5), star, 0.5)
    assert _close(path.at(8)[0], anchor)
    assert _close(path.at(12)[0], slerp(anchor, conds.cond_b, 0.5))


def test_negative_keyframe_moves_the_negative_path(bundle, conds):
    dark = encode_prompt(bundle, "dark")[0]
    frames = _frames(TextPath(bundle, conds, POSITIONS, {8: FrameEdit(negative_prompt="dark",
                                                                      keyframe=True)}))
    plain = _frames(TextPath(bundle, conds, POSITIONS, {}))
    assert torch.equal(frames[8][1], dark) and _close(frames[4][1], slerp(conds.uncond, dark, 0.5))
    assert all(torch.equal(f[0], p[0]) for f, p in zip(frames, plain))
    assert torch.equal(frames[0][1], conds.uncond) and torch.equal(frames[16][1], conds.uncond)


def test_bad_path_arguments(bundle, conds):
    with pytest.raises(ValueError, match="positions"):
        TextPath(bundle, conds, [0.0, 0.6, 0.5, 1.0])
    with pytest.raises(ValueError, match="out of range"):
        TextPath(bundle, conds, POSITIONS, {17: FrameEdit(prompt="x")})
    with pytest.raises(TypeError, match="FrameEdit"):
        TextPath(bundle, conds, POSITIONS, {3: {"prompt": "x"}})
    with pytest.raises(ValueError, match="index"):
        TextPath(bundle, conds, POSITIONS).at(17)
