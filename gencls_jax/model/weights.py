"""Hugging Face GPT-2 checkpoints <-> our parameter tree.

GPT-2 stores its projections as `Conv1D` with weight shape (in, out), which is already Flax's
Dense kernel layout, so no transpose is needed (an `nn.Linear` would be (out, in)). Layers
are stacked on a leading axis to match our scanned blocks. The causal-mask buffers
(`attn.bias`, `attn.masked_bias`) that old checkpoints carry are ignored, and the LM head
is tied to `wte`: a checkpoint whose `lm_head.weight` differs from `wte` is refused.
Reading safetensors needs numpy only; torch is imported only for `pytorch_model.bin`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from gencls_jax.model.gpt2 import GPT2Config
from gencls_jax.system import network

# (our path inside the layer, HF suffix) for the per-layer tensors.
_LAYER_TENSORS = [
    (("ln_1", "scale"), "ln_1.weight"),
    (("ln_1", "bias"), "ln_1.bias"),
    (("attn", "c_attn", "kernel"), "attn.c_attn.weight"),
    (("attn", "c_attn", "bias"), "attn.c_attn.bias"),
    (("attn", "c_proj", "kernel"), "attn.c_proj.weight"),
    (("attn", "c_proj", "bias"), "attn.c_proj.bias"),
    (("ln_2", "scale"), "ln_2.weight"),
    (("ln_2", "bias"), "ln_2.bias"),
    (("mlp", "c_fc", "kernel"), "mlp.c_fc.weight"),
    (("mlp", "c_fc", "bias"), "mlp.c_fc.bias"),
    (("mlp", "c_proj", "kernel"), "mlp.c_proj.weight"),
    (("mlp", "c_proj", "bias"), "mlp.c_proj.bias"),
]
_TOP_TENSORS = [
    (("wte", "embedding"), "wte.weight"),
    (("wpe", "embedding"), "wpe.weight"),
    (("ln_f", "scale"), "ln_f.weight"),
    (("ln_f", "bias"), "ln_f.bias"),
]
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the GPT-2 layout or the config."""


def expected_shapes(config: GPT2Config) -> dict[str, tuple[int, ...]]:
    """HF tensor name -> shape, for every tensor we read."""
    d, v, p = config.n_embd, config.vocab_size, config.n_positions
    per_layer = {
        "ln_1.weight": (d,),
        "ln_1.bias": (d,),
        "ln_2.weight": (d,),
        "ln_2.bias": (d,),
        "attn.c_attn.weight": (d, 3 * d),
        "attn.c_attn.bias": (3 * d,),
        "attn.c_proj.weight": (d, d),
        "attn.c_proj.bias": (d,),
        "mlp.c_fc.weight": (d, 4 * d),
        "mlp.c_fc.bias": (4 * d,),
        "mlp.c_proj.weight": (4 * d, d),
        "mlp.c_proj.bias": (d,),
    }
    shapes = {"wte.weight": (v, d), "wpe.weight": (p, d), "ln_f.weight": (d,), "ln_f.bias": (d,)}
    for i in range(config.n_layer):
        shapes.update({f"h.{i}.{k}": s for k, s in per_layer.items()})
    return shapes


def config_from_hf(hf: dict[str, Any], **overrides: Any) -> GPT2Config:
    """GPT2Config from a Hugging Face config.json dict (architecture only; numerics from
    overrides)."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise CheckpointError(f"model_type is {hf.get('model_type')!r}, expected 'gpt2'")
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise CheckpointError(
            f"activation_function {act!r} is not supported (GPT-2 uses 'gelu_new')"
        )
    if hf.get("scale_attn_by_inverse_layer_idx", False) or not hf.get("scale_attn_weights", True):
        raise CheckpointError(
            "only GPT-2's standard attention scaling (1/sqrt(head_dim)) is supported"
        )
    arch = dict(
        vocab_size=hf["vocab_size"],
        n_positions=hf.get("n_positions", hf.get("n_ctx", 1024)),
        n_embd=hf["n_embd"],
        n_layer=hf["n_layer"],
        n_head=hf["n_head"],
        layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-5),
        dropout=hf.get("resid_pdrop", 0.1),
        bos_token_id=hf.get("bos_token_id", 50256),
    )
    return GPT2Config(**{**arch, **overrides})


def hf_config_dict(config: GPT2Config) -> dict[str, Any]:
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_positions": config.n_positions,
        "n_ctx": config.n_positions,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.bos_token_id,
        "tie_word_embeddings": True,
    }


def _strip_prefix(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`transformer.h.0...` (GPT2LMHeadModel) and `h.0...` (GPT2Model, the hub's gpt2) ->
    `h.0...`."""
    out = {}
    for k, v in tensors.items():
        out[k.removeprefix("transformer.")] = v
    return out


def params_from_hf_tensors(
    tensors: dict[str, np.ndarray], config: GPT2Config, source: str = "checkpoint"
) -> dict:
    """Build our float32 parameter tree from HF tensors, checking every name and shape."""
    tensors = _strip_prefix(tensors)
    shapes = expected_shapes(config)
    for name, shape in shapes.items():
        if name not in tensors:
            raise CheckpointError(f"{source}: tensor {name!r} is missing (expected shape {shape})")
        if tuple(tensors[name].shape) != shape:
            raise CheckpointError(
                f"{source}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                f"the config expects {shape}"
            )
    unknown = [
        k
        for k in tensors
        if k not in shapes and k != "lm_head.weight" and not k.endswith(_IGNORED_SUFFIXES)
    ]
    if unknown:
        raise CheckpointError(
            f"{source}: unexpected tensors {unknown[:5]} (is this a GPT-2 LM checkpoint?)"
        )
    if "lm_head.weight" in tensors and not np.array_equal(
        tensors["lm_head.weight"], tensors["wte.weight"]
    ):
        raise CheckpointError(
            f"{source}: lm_head.weight differs from wte.weight; only tied GPT-2 heads are supported"
        )

    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    params: dict = {}

    def put(path, value):
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = jnp.asarray(value)

    for path, name in _TOP_TENSORS:
        put(path, f32(tensors[name]))
    for path, suffix in _LAYER_TENSORS:
        put(
            ("h",) + path,
            np.stack([f32(tensors[f"h.{i}.{suffix}"]) for i in range(config.n_layer)]),
        )
    return params


def hf_tensors_from_params(params: dict, config: GPT2Config) -> dict[str, np.ndarray]:
    """The reverse of `params_from_hf_tensors`, with GPT2LMHeadModel's `transformer.` prefix."""
    out = {}

    def get(path):
        node = params
        for key in path:
            node = node[key]
        return np.asarray(node, dtype=np.float32)

    for path, name in _TOP_TENSORS:
        out[f"transformer.{name}"] = get(path)
    for path, suffix in _LAYER_TENSORS:
        stacked = get(("h",) + path)
        for i in range(config.n_layer):
            out[f"transformer.h.{i}.{suffix}"] = np.ascontiguousarray(stacked[i])
    return out


def _read_folder(folder: Path) -> dict[str, np.ndarray]:
    st = sorted(folder.glob("*.safetensors"))
    if st:
        from safetensors.numpy import load_file

        tensors: dict[str, np.ndarray] = {}
        for f in st:  # sharded checkpoints: model-00001-of-0000N.safetensors
            tensors.update(load_file(str(f)))
        return tensors
    bin_path = folder / "pytorch_model.bin"
    if bin_path.exists():
        try:
            import torch
        except ImportError as e:
            raise CheckpointError(
                f"{bin_path} needs torch to read; convert it to safetensors or install torch"
            ) from e
        state = torch.load(bin_path, map_location="cpu", weights_only=True)
        return {k: v.float().numpy() for k, v in state.items()}
    raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin")


def _resolve(name_or_path: str | os.PathLike) -> Path:
    """A local folder as is; otherwise a hub name, from the HF cache or downloaded (safetensors
    first). Offline (`network.offline`), only the cache is read: no hub call, no retries."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    if p.exists() or not network.is_hub_name(str(name_or_path)):
        raise CheckpointError(f"{name_or_path}: not a checkpoint folder")
    offline = network.offline()
    try:
        from huggingface_hub import snapshot_download

        folder = Path(
            snapshot_download(str(name_or_path), allow_patterns=["config.json", "*.safetensors"])
        )
        if not list(folder.glob("*.safetensors")):
            folder = Path(
                snapshot_download(
                    str(name_or_path), allow_patterns=["config.json", "pytorch_model.bin"]
                )
            )
        return folder
    except Exception as e:  # offline, unknown repo, auth: one line that says what to do
        why = (
            f": offline ({offline}) and not in the Hugging Face cache"
            if offline
            else f" from the Hugging Face hub ({type(e).__name__})"
        )
        raise CheckpointError(
            f"could not fetch {str(name_or_path)!r}{why}; pass a local folder with config.json "
            "and model.safetensors, or start from scratch"
        ) from None


def load_pretrained(
    name_or_path: str | os.PathLike, **config_overrides: Any
) -> tuple[GPT2Config, dict]:
    """Load a GPT-2 checkpoint (hub name or local folder) -> (config, float32 params).

    `config_overrides` set the numerics (dtype, remat, attention, dropout); the architecture
    comes from the checkpoint's config.json.
    """
    folder = _resolve(name_or_path)
    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        raise CheckpointError(f"{folder}: config.json is missing")
    config = config_from_hf(json.loads(cfg_path.read_text()), **config_overrides)
    return config, params_from_hf_tensors(_read_folder(folder), config, source=str(folder))


def save_pretrained(config: GPT2Config, params: dict, folder: str | os.PathLike) -> Path:
    """Write config.json + model.safetensors that `GPT2LMHeadModel.from_pretrained` loads."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf_config_dict(config), indent=2))
    save_file(
        hf_tensors_from_params(params, config),
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )
    return folder
