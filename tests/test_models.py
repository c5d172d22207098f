"""The bench models (shapes, sizes derived from the architectures, trainability, masks) and metrics."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ntlr_bench.metrics import accuracy, corpus_bleu, detokenize, token_cross_entropy
from ntlr_bench.models import Seq2SeqTransformer, count_parameters, mlp, resnet50, wide_resnet

PAD, BOS, EOS = 0, 1, 2


# --- expected parameter counts, derived layer by layer from the papers' architecture definitions ---


def _bn(channels: int) -> int:
    return 2 * channels  # gamma and beta


def wrn_parameter_count(depth: int, k: int, num_classes: int, in_channels: int = 3) -> int:
    n = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    total = 9 * in_channels * widths[0]  # stem conv, no bias
    for stage in range(3):
        for i in range(n):
            cin, cout = (widths[stage] if i == 0 else widths[stage + 1]), widths[stage + 1]
            total += _bn(cin) + 9 * cin * cout + _bn(cout) + 9 * cout * cout
            if cin != cout or (i == 0 and stage > 0):  # projection where channels or resolution change
                total += cin * cout
    return total + _bn(widths[3]) + widths[3] * num_classes + num_classes


def resnet50_parameter_count(num_classes: int) -> int:
    total = 3 * 64 * 7 * 7 + _bn(64)
    cin = 64
    for planes, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        cout = 4 * planes
        for i in range(blocks):
            total += (
                cin * planes + _bn(planes) + 9 * planes * planes + _bn(planes) + planes * cout + _bn(cout)
            )
            if i == 0:
                total += cin * cout + _bn(cout)
            cin = cout
    return total + 2048 * num_classes + num_classes


# --- image models ---


def test_mlp_shape_and_size():
    model = mlp(784, 10)
    assert model(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    assert count_parameters(model) == 784 * 1000 + 1000 + 1000 * 10 + 10 == 795_010
    assert count_parameters(mlp(20, 3, hidden=7)) == 20 * 7 + 7 + 7 * 3 + 3


def test_mlp_rejects_bad_sizes():
    with pytest.raises(ValueError, match="hidden"):
        mlp(784, 10, hidden=0)
    with pytest.raises(TypeError, match="in_features"):
        mlp(784.0, 10)


@pytest.mark.parametrize(("depth", "k", "classes"), [(16, 4, 10), (10, 1, 100), (22, 2, 10)])
def test_wide_resnet_size_matches_architecture(depth, k, classes):
    assert count_parameters(wide_resnet(depth, k, num_classes=classes)) == wrn_parameter_count(
        depth, k, classes
    )


def test_wrn_16_4_is_the_papers_size():
    # Zagoruyko & Komodakis report WRN-16-4 at 2.7M parameters on CIFAR-10.
    assert 2.70e6 < count_parameters(wide_resnet(16, 4)) < 2.80e6


def test_wide_resnet_shapes():
    x = torch.randn(2, 3, 32, 32)
    assert wide_resnet(16, 4, num_classes=10)(x).shape == (2, 10)
    small = wide_resnet(depth=10, widen_factor=1, num_classes=100)
    assert [len(stage) for stage in small.stages] == [1, 1, 1]
    assert small(x).shape == (2, 100)
    gray = wide_resnet(10, 1, num_classes=10, in_channels=1)
    assert gray(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_wide_resnet_validates_depth_and_dropout():
    for depth in (15, 4, 12):
        with pytest.raises(ValueError, match="depth"):
            wide_resnet(depth=depth)
    with pytest.raises(ValueError, match="dropout"):
        wide_resnet(10, 1, dropout=1.0)
    model = wide_resnet(10, 1, dropout=0.3)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in model.modules())


def test_resnet50_size_and_shape():
    assert count_parameters(resnet50()) == resnet50_parameter_count(1000)
    assert 25.5e6 < resnet50_parameter_count(1000) < 25.6e6  # He et al.: ~25.6M
    model = resnet50(num_classes=10)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_resnet50_is_v1_5_and_zero_init_is_optional():
    model = resnet50(num_classes=10)
    for stage in list(model.stages)[1:]:
        first = stage[0]
        assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)
    assert all(stage[0].bn3.weight.abs().sum() > 0 for stage in model.stages)
    zeroed = resnet50(num_classes=10, zero_init_residual=True)
    bn3 = [block.bn3.weight for stage in zeroed.stages for block in stage]
    assert len(bn3) == 16 and all(torch.count_nonzero(w) == 0 for w in bn3)


def test_resnet50_width_per_group_widens_the_bottleneck():
    wide = resnet50(num_classes=10, width_per_group=128)  # Wide ResNet-50-2
    assert wide.stages[0][0].conv2.out_channels == 128
    assert count_parameters(wide) > count_parameters(resnet50(num_classes=10))


def test_count_parameters():
    shared = nn.Linear(3, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert count_parameters(model) == 3 * 4 + 4  # a tied tensor counts once
    shared.bias.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 12
    with pytest.raises(TypeError, match="model"):
        count_parameters([shared])


# --- one optimisation step on a fixed batch lowers the loss, for every model ---


def _step_lowers_loss(model: nn.Module, loss_fn, lr: float) -> tuple[float, float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    before = loss_fn(model)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss_fn(model)
    return before.item(), after.item()


def _classification_loss(x: torch.Tensor, y: torch.Tensor):
    return lambda model: F.cross_entropy(model(x), y)


@pytest.mark.parametrize(
    ("name", "build", "shape", "lr"),
    [
        ("mlp", lambda: mlp(784, 10), (8, 1, 28, 28), 0.1),
        ("wrn-10-1", lambda: wide_resnet(10, 1, num_classes=10), (8, 3, 32, 32), 0.05),
        ("resnet50", lambda: resnet50(num_classes=10), (4, 3, 64, 64), 0.01),
    ],
)
def test_one_step_lowers_loss_image_models(name, build, shape, lr):
    torch.manual_seed(0)
    model = build()
    x, y = torch.randn(*shape), torch.randint(0, 10, (shape[0],))
    before, after = _step_lowers_loss(model, _classification_loss(x, y), lr)
    assert after < before, name


# --- transformer ---


def small_transformer(vocab: int = 20, **kwargs) -> Seq2SeqTransformer:
    config = dict(d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=64)
    config.update(dropout=0.0, max_len=32)
    config.update(kwargs)
    return Seq2SeqTransformer(vocab, vocab + 3, **config)


def test_transformer_shapes_and_default_size():
    torch.manual_seed(0)
    model = small_transformer()
    src, tgt_in = torch.randint(3, 20, (4, 7)), torch.randint(3, 23, (4, 5))
    assert model(src, tgt_in).shape == (4, 5, 23)
    # The tutorial's configuration: 512-wide, 8 heads, 3+3 layers, FFN 512.
    d, ff, v_src, v_tgt = 512, 512, 100, 120
    attention = 4 * d * d + 4 * d
    ffn = d * ff + ff + ff * d + d
    expected = (
        v_src * d + v_tgt * d
        + 3 * (attention + ffn + 2 * 2 * d)  # encoder layers: self-attention, FFN, two LayerNorms
        + 2 * d  # encoder final LayerNorm
        + 3 * (2 * attention + ffn + 3 * 2 * d)  # decoder layers: self- and cross-attention, FFN, 3 norms
        + 2 * d  # decoder final LayerNorm
        + d * v_tgt + v_tgt  # generator
    )  # fmt: skip
    assert count_parameters(Seq2SeqTransformer(v_src, v_tgt)) == expected


def test_transformer_validates_arguments():
    with pytest.raises(ValueError, match="d_model"):
        Seq2SeqTransformer(10, 10, d_model=30, nhead=4)
    with pytest.raises(ValueError, match="pad_id"):
        Seq2SeqTransformer(10, 10, pad_id=10)
    model = small_transformer(max_len=8)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randint(3, 20, (1, 9)), torch.randint(3, 20, (1, 3)))
    with pytest.raises(ValueError, match="src"):
        model(torch.randn(2, 3), torch.randint(3, 20, (2, 3)))


def test_transformer_one_step_lowers_loss():
    torch.manual_seed(0)
    model = small_transformer()
    src = torch.randint(3, 20, (8, 6))
    tgt = torch.cat([torch.full((8, 1), BOS), torch.randint(3, 23, (8, 5)), torch.full((8, 1), EOS)], 1)
    before, after = _step_lowers_loss(
        model, lambda m: token_cross_entropy(m(src, tgt[:, :-1]), tgt[:, 1:]), 0.05
    )
    assert after < before


def test_transformer_decoder_is_causal():
    torch.manual_seed(0)
    model = small_transformer().eval()
    src, tgt_in = torch.randint(3, 20, (2, 6)), torch.randint(3, 23, (2, 7))
    changed = tgt_in.clone()
    changed[:, 4] = (changed[:, 4] - 3 + 1) % 20 + 3  # another non-special token
    with torch.no_grad():
        a, b = model(src, tgt_in), model(src, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])  # the change is visible from its own position on


@pytest.mark.parametrize("training", [False, True])
def test_transformer_padding_is_masked(training):
    torch.manual_seed(0)
    model = small_transformer().train(training)  # dropout is 0, so train mode is deterministic too
    src_short, tgt_short = (
        torch.randint(3, 19, (1, 4)),  # ids below 19, the other model's pad_id
        torch.cat([torch.tensor([[BOS]]), torch.randint(3, 19, (1, 3))], 1),
    )
    src_long, tgt_long = (
        torch.randint(3, 20, (1, 7)),
        torch.cat([torch.tensor([[BOS]]), torch.randint(3, 23, (1, 5))], 1),
    )
    src = torch.cat([F.pad(src_short, (0, 3), value=PAD), src_long])
    tgt_in = torch.cat([F.pad(tgt_short, (0, 2), value=PAD), tgt_long])
    with torch.no_grad():
        batched = model(src, tgt_in)
        alone = model(src_short, tgt_short)
        also_alone = model(src_long, tgt_long)
    torch.testing.assert_close(batched[0, :4], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched[1], also_alone[0], atol=1e-5, rtol=1e-5)
    # The mask is what makes this hold: the same row with pad_id pointing elsewhere sees the zeros.
    unmasked = small_transformer(pad_id=19).train(training)
    unmasked.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(unmasked(src[:1], tgt_in[:1])[0, :4], alone[0], atol=1e-5)


def test_greedy_decode_shape_mode_and_early_stop():
    torch.manual_seed(0)
    model = small_transformer().train()
    src = torch.randint(3, 20, (3, 5))
    out = model.greedy_decode(src, max_len=6)
    assert out.dtype == torch.long and out.shape[0] == 3 and 1 <= out.shape[1] <= 6
    assert torch.equal(out[:, 0], torch.full((3,), BOS))
    assert model.training  # the previous mode is restored
    with torch.no_grad():  # make EOS every step's arg-max
        model.generator.bias.zero_()
        model.generator.bias[EOS] = 1e4
    stopped = model.greedy_decode(src, max_len=6)
    assert torch.equal(stopped, torch.tensor([[BOS, EOS]] * 3))  # all rows done: stops early


def test_transformer_handles_an_empty_source_row():
    torch.manual_seed(0)
    model = small_transformer(max_len=8)
    src = torch.tensor([[5, 6, 7], [PAD, PAD, PAD]])
    tgt_in = torch.tensor([[BOS, 4], [BOS, 4]])
    assert torch.isfinite(model(src, tgt_in)).all()
    with torch.no_grad():  # eval + no_grad: the fused inference path gives NaN for an all-masked row
        assert torch.isfinite(model.eval()(src, tgt_in)).all()
    assert model.greedy_decode(src, max_len=50).shape[1] <= 8  # capped at the model's max_len


def test_greedy_decode_pads_finished_rows(monkeypatch):
    model = small_transformer()

    # Scripted decoder: row r emits token 5 until step r + 1, then EOS, then (if asked) token 7.
    def scripted(ys, memory, src_padding):
        step = ys.size(1)
        logits = torch.zeros(ys.size(0), ys.size(1), 23)
        for row in range(ys.size(0)):
            logits[row, -1, 5 if step <= row else (EOS if step == row + 1 else 7)] = 1.0
        return logits

    monkeypatch.setattr(model, "decode", scripted)
    out = model.greedy_decode(torch.randint(3, 20, (3, 4)), max_len=10)
    expected = [
        [BOS, EOS, PAD, PAD],
        [BOS, 5, EOS, PAD],
        [BOS, 5, 5, EOS],
    ]
    assert out.tolist() == expected  # stops as soon as the last row is done
    assert model.greedy_decode(torch.randint(3, 20, (3, 4)), max_len=3).shape == (3, 3)


def test_transformer_learns_to_copy():
    torch.manual_seed(0)
    vocab, length = 12, 6
    model = small_transformer(vocab=vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        body = torch.randint(3, vocab, (n, length))
        return body, torch.cat([torch.full((n, 1), BOS), body, torch.full((n, 1), EOS)], 1)

    for _ in range(150):
        src, tgt = batch(64)
        loss = token_cross_entropy(model(src, tgt[:, :-1]), tgt[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    src, tgt = batch(32)
    decoded = model.greedy_decode(src, max_len=length + 4)
    assert decoded.shape == (32, length + 2)  # every row emitted EOS right after the copy
    assert (decoded == tgt).all(dim=1).float().mean() >= 0.9


# --- metrics ---


def test_accuracy():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [0.0, 5.0, 1.0], [1.0, 0.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 2, 0, 1])) == pytest.approx(0.5)
    assert accuracy(logits.unsqueeze(0), torch.tensor([[0, 2, 1, 0]])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="targets"):
        accuracy(logits, torch.tensor([0, 1]))


def test_token_cross_entropy_ignores_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7, requires_grad=True)
    targets = torch.tensor([[3, 4, 0, 0], [5, 6, 2, 0]])
    value = token_cross_entropy(logits, targets)
    keep = targets != PAD
    manual = -torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)[keep].mean()
    torch.testing.assert_close(value, manual)
    value.backward()
    assert torch.count_nonzero(logits.grad[~keep]) == 0  # pad positions get no gradient
    other_pad = token_cross_entropy(logits, targets.masked_fill(~keep, 6), pad_id=6)
    assert not torch.isclose(other_pad, value)  # pad_id is honoured, not fixed at 0
    with pytest.raises(ValueError, match="targets"):
        token_cross_entropy(logits, targets[:, :3])


VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>", "a", "man", "is", "riding", "horse", "dog", "."]


def test_detokenize_stops_at_eos_and_drops_specials():
    assert detokenize([BOS, 4, 5, 6, EOS, 9, 9], VOCAB) == "a man is"
    assert detokenize(torch.tensor([BOS, 4, PAD, 5, EOS, PAD]), VOCAB) == "a man"
    assert detokenize([4, 3, 5], VOCAB) == "a <unk> man"  # UNK is not a special by default
    with pytest.raises(ValueError, match="vocabulary"):
        detokenize([4, 99], VOCAB)


def test_corpus_bleu():
    pytest.importorskip("sacrebleu")
    refs = [[BOS, 4, 5, 6, 7, 4, 8, 10, EOS], [BOS, 4, 9, 6, 7, 4, 8, 10, EOS, PAD]]
    assert corpus_bleu(refs, refs, VOCAB) == pytest.approx(100.0)
    # Same words once BOS, padding and everything after EOS are dropped.
    hyps = [[4, 5, 6, 7, 4, 8, 10, EOS, 9, 9], [BOS, 4, 9, 6, 7, 4, 8, 10, EOS]]
    assert corpus_bleu(hyps, refs, VOCAB) == pytest.approx(100.0)
    wrong = [[BOS, 4, 9, 6, 7, 4, 8, 10, EOS], [BOS, 4, 9, 6, 7, 4, 8, 10, EOS]]
    assert 0.0 < corpus_bleu(wrong, refs, VOCAB) < 100.0
    assert corpus_bleu([[BOS, 9, EOS], [EOS]], refs, VOCAB) < 5.0
    with pytest.raises(ValueError, match="references"):
        corpus_bleu(refs, refs[:1], VOCAB)


def test_corpus_bleu_names_the_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # makes `import sacrebleu` raise ImportError
    with pytest.raises(ImportError, match="sacrebleu"):
        corpus_bleu([[4]], [[4]], VOCAB)
