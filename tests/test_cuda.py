"""The GPU path, checked where CUDA is and skipped elsewhere (CI has no GPU).

Every registered model computes on CUDA what it computes on the CPU; the deformable conv's
CUDA kernel (torchvision's) agrees with the grid-sample implementation the CPU uses; a run
trained on CUDA resumes after SIGKILL to bit-identical weights; every published
classification weight re-measures on the GPU within its task's tolerance.

    python -m pytest -q tests/test_cuda.py      # on a machine with a GPU
"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.engine import evaluate_published, get_task
from zoo.engine.evaluator import differences
from zoo.layers import DeformConv2d
from zoo.weights import load_manifest

from .test_detection import targets_one_box_and_empty
from .test_models import CLASSIFIERS, build, rand_input
from .test_trainer import check_resume_after_sigkill

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU: torch.cuda.is_available() is False here"
)
GPU = torch.device("cuda")


@pytest.fixture
def full_float32():
    """TF32 off while CPU and GPU are compared: with it, CUDA convolutions round to 10 mantissa bits."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _randomize_offsets(model: torch.nn.Module) -> None:
    """Non-zero offset predictors, so that deformable convs really sample off the grid."""
    torch.manual_seed(2)
    for m in model.modules():
        if isinstance(m, DeformConv2d):
            with torch.no_grad():
                m.offset_mask.weight.normal_(0, 0.05)
                m.offset_mask.bias.normal_(0, 0.5)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_on_cuda_computes_what_it_computes_on_cpu(name, full_float32):
    built = build(name)
    model, x = built.model.eval(), rand_input(built)
    with torch.no_grad():
        cpu = model(x)
        gpu = model.to(GPU)(x.to(GPU)).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-3)
    # one bf16 training step on the GPU, channels_last as the trainer runs it
    model.train().to(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(x.to(GPU).to(memory_format=torch.channels_last)).float().logsumexp(1).mean()
    loss.backward()
    assert torch.isfinite(loss)
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: parameters without a finite gradient on CUDA: {bad[:5]}"


@pytest.mark.parametrize("name", zoo.list_models(task="segmentation"))
def test_segmenter_on_cuda_computes_what_it_computes_on_cpu(name, full_float32):
    torch.manual_seed(0)
    model = zoo.create_model(name, num_classes=5, aux_loss=True).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        cpu = model(x)
        gpu = model.to(GPU)(x.to(GPU))
    for key in cpu:
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name", zoo.list_models(task="detection"))
def test_detector_on_cuda_computes_what_it_computes_on_cpu(name, full_float32):
    torch.manual_seed(0)
    model = zoo.create_model(name).train()
    _randomize_offsets(model)
    x, targets = torch.randn(2, 3, 96, 128), targets_one_box_and_empty()
    cpu = model(x, targets)
    model.to(GPU)
    gpu = model(x.to(GPU), [{k: v.to(GPU) for k, v in t.items()} for t in targets])
    for key in cpu:
        torch.testing.assert_close(gpu[key].cpu(), cpu[key].detach(), atol=1e-4, rtol=1e-3)
    sum(gpu.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_deform_conv_cuda_kernel_equals_the_cpu_sampler(full_float32):
    """On CUDA the layer runs torchvision's kernel by default; on the CPU, the grid-sample one.
    Both must compute the same outputs and gradients, offsets far off the grid included."""
    sampler = DeformConv2d(5, 7, 3, impl="grid_sample").double()
    _randomize_offsets(sampler)
    with torch.no_grad():
        sampler.offset_mask.weight.normal_(0, 1.0)
    kernel = DeformConv2d(5, 7, 3, impl="torchvision").double()
    kernel.load_state_dict(sampler.state_dict())
    x = torch.randn(2, 5, 9, 11, dtype=torch.float64)

    def run(m, device):
        m = m.to(device)
        m.zero_grad()
        xi = x.to(device).detach().requires_grad_()
        out = m(xi)
        probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=device).view_as(out)
        (out * probe).sum().backward()
        grads = [xi.grad] + [p.grad for p in m.parameters()]
        return out.detach().cpu(), [g.detach().cpu() for g in grads]

    cpu_out, cpu_grads = run(sampler, "cpu")
    gpu_out, gpu_grads = run(kernel, GPU)
    torch.testing.assert_close(gpu_out, cpu_out)
    for g, ref in zip(gpu_grads, cpu_grads):
        torch.testing.assert_close(g, ref)


def test_cuda_run_resumes_after_sigkill_to_identical_weights(tmp_path):
    extra = ["train.device=cuda", "train.ckpt_every_steps=10"]
    check_resume_after_sigkill(tmp_path, extra, max_steps=120, kill_from=10)  # GPU steps are quick


CLASSIFICATION_WEIGHTS = [e for e in load_manifest() if e.task == "classification"]


@pytest.mark.parametrize("entry", CLASSIFICATION_WEIGHTS, ids=[e.name for e in CLASSIFICATION_WEIGHTS])
def test_published_classifier_remeasures_on_cuda(entry):
    # PyTorch's defaults (TF32 convolutions), as a user's eval.py --device cuda runs
    result = evaluate_published(entry.name, GPU).result  # eval.py NAME --device cuda
    tolerance = get_task(entry.task).tolerance
    for metric, diff in differences(result, entry.metrics).items():
        assert abs(diff) <= tolerance, (metric, diff, entry.metrics[metric], tolerance)
