"""Training that starts from a released model (this project's or a 2018 one) or an original-format checkpoint.

:meth:`CGCNNRegressor.from_pretrained <skcgcnn.CGCNNRegressor.from_pretrained>` reads the architecture and graph
settings here, and the network's first weights are copied in by :func:`start_from`. A model of this project
starts from its first member.
"""

from __future__ import annotations

import torch

from .checkpoints import ORIGINAL_GRAPH, architecture, atom_features_of, load_pretrained_weights, read_checkpoint
from .elements import AtomFeatures
from .graphs import CrystalGraphTransformer
from .model_format import read_content
from .registry import RELEASED, model_path, source_path

__all__ = ["start_from", "training_params"]

_ARCHITECTURE = ("atom_fea_len", "n_conv", "h_fea_len", "n_h", "pooling")


def _first_member(name: str) -> dict:
    """The record of a released model's first member (its parameters, graph settings and weights)."""
    content = read_content(model_path(name))
    return content["ensemble"]["members"][0]


def _member_features(member: dict) -> AtomFeatures:
    table = member["graph_settings"]["atom_features"]
    return AtomFeatures(table["table"].numpy(), table["known"].numpy(), table["name"])


def training_params(name_or_path) -> dict:
    """Estimator parameters that train on from a released model or a checkpoint: its architecture, graphs it reads.

    Parameters
    ----------
    name_or_path : str or path-like
        A key of :data:`skcgcnn.registry.RELEASED` or :data:`skcgcnn.registry.MODELS`, or an original-format
        checkpoint.

    Returns
    -------
    dict
        ``atom_fea_len``, ``n_conv``, ``h_fea_len``, ``n_h``, ``featurizer``
        (the original graph geometry and the checkpoint's atom features, with
        the default shared neighbour rule) and ``pretrained``.
    """
    if isinstance(name_or_path, str) and name_or_path in RELEASED:
        member = _first_member(name_or_path)
        settings = {k: v for k, v in member["graph_settings"].items() if k != "atom_features"}
        return {**{k: member["params"][k] for k in _ARCHITECTURE},
                "featurizer": CrystalGraphTransformer(**settings, atom_features=_member_features(member)),
                "pretrained": name_or_path}
    path = source_path(name_or_path)
    args = read_checkpoint(path)["args"]
    return {**architecture(args),
            "featurizer": CrystalGraphTransformer(**ORIGINAL_GRAPH, atom_features=atom_features_of(path)),
            "pretrained": name_or_path}


def start_from(module: torch.nn.Module, name_or_path, atom_features: AtomFeatures, task: str, owner: str) -> None:
    """Load a released model's or a checkpoint's weights into a new network, to train on from them (fine-tuning).

    Parameters
    ----------
    module : CGCNN
        Built for the new training data.
    name_or_path : str or path-like
        A key of :data:`skcgcnn.registry.MODELS` or an original-format checkpoint.
    atom_features : AtomFeatures
        Those of the new training graphs; they must be the checkpoint's.
    task : {"regression", "classification"}
        The new task: the output layer is kept only when the task and its shape are the checkpoint's.
    owner : str
        The estimator's class name, for messages.
    """
    if isinstance(name_or_path, str) and name_or_path in RELEASED:
        _start_from_released(module, name_or_path, atom_features, task, owner)
        return
    path = source_path(name_or_path)
    checkpoint = read_checkpoint(path)
    expected = atom_features_of(path)
    if atom_features != expected:
        raise ValueError(
            f"pretrained={name_or_path!r} reads atom features {expected.name!r}, but the training graphs "
            f"were built with {atom_features.name!r}; {owner}.from_pretrained sets a matching featurizer"
        )
    out = checkpoint["state_dict"].get("fc_out.weight")
    new_head = checkpoint["args"]["task"] != task or out is None or out.shape != module.out.weight.shape
    load_pretrained_weights(module, checkpoint["state_dict"], str(path), skip_output=new_head)


def _start_from_released(module: torch.nn.Module, name: str, atom_features: AtomFeatures, task: str,
                         owner: str) -> None:
    member = _first_member(name)
    if atom_features != _member_features(member):
        raise ValueError(f"pretrained={name!r} reads other atom features than the training graphs were built "
                         f"with; {owner}.from_pretrained sets a matching featurizer")
    state = member["state_dict"]
    own = module.state_dict()
    keep_head = task == RELEASED[name].task and state["out.weight"].shape == own["out.weight"].shape
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape and not k.startswith("out.")]
    if wrong or set(state) - set(own):
        raise ValueError(f"{name}: the weights do not fit this architecture: {', '.join(wrong) or 'other layers'}")
    module.load_state_dict({k: v for k, v in state.items() if keep_head or not k.startswith("out.")}, strict=False)
