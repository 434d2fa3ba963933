"""Data-parallel training on several GPUs, processes or machines through Hugging Face Accelerate (DDP).

The estimators here are the ordinary ones with skorch's ``AccelerateMixin``:
each process started by ``accelerate launch`` trains on its share of every
epoch's batches, gradients are averaged across processes (PyTorch
``DistributedDataParallel``), and every process ends with the same weights.
Accelerate is an optional dependency (``pip install "skcgcnn[accelerate]"``);
it is needed only when one of these estimators is given an ``Accelerator``.
"""

from __future__ import annotations

import os

import torch
from skorch.hf import AccelerateMixin

from .estimators import CGCNNClassifier, CGCNNRegressor

__all__ = ["AcceleratedCGCNNRegressor", "AcceleratedCGCNNClassifier"]


class _DataParallel(AccelerateMixin):
    """What both accelerated estimators add to skorch's mixin (first in the MRO)."""

    def _check_params(self, fit_params: dict) -> None:
        accelerator = self.accelerator
        if accelerator.device_placement or self.device is None:
            raise ValueError(
                f"{type(self).__name__} moves its own batches (they are graphs, not tensors): create the "
                "Accelerator with device_placement=False and pass device=accelerator.device"
            )
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched != accelerator.num_processes:
            raise RuntimeError(
                f"the launcher started {launched} processes but the Accelerator sees {accelerator.num_processes}: "
                "each would train alone on all the data. Without GPUs, create it with Accelerator(cpu=True)"
            )
        super()._check_params(fit_params)

    def _initialize_callbacks(self):
        # skorch's mixin prints the epoch table through the accelerator whatever `verbose` says.
        if self.callbacks__print_log__sink == "auto":
            self.callbacks__print_log__sink = self._print_from_main_process
        return super()._initialize_callbacks()

    def _print_from_main_process(self, *args, **kwargs) -> None:
        if self.verbose:
            self.accelerator.print(*args, **kwargs)

    def _share_buffers(self) -> None:
        # DDP copies the first process's buffers (batch-norm running statistics) to the others before each
        # training step, so each process's last step leaves them different; without this, validation scores
        # and predictions would depend on the process.
        if self.accelerator.num_processes > 1 and torch.distributed.is_initialized():
            for buffer in self.module_.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def _plain_module(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.module_)

    def _gathered(self, output: torch.Tensor) -> torch.Tensor:
        # Each process iterates over its shard of the batches: predictions are the union, in order.
        return self.accelerator.gather_for_metrics(output)

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if not training:
            self._share_buffers()
        return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self._share_buffers()
        return super().on_train_end(net, X=X, y=y, **kwargs)

    def _initialize_accelerator(self):
        # DistributedDataParallel refuses a module with no trainable parameter, which the loss is; it needs
        # no wrapping anyway, only the network does.
        criteria, self._criteria = self._criteria, []
        try:
            return super()._initialize_accelerator()
        finally:
            self._criteria = criteria


_EXAMPLE = """
    Parameters
    ----------
    accelerator : accelerate.Accelerator
        Created with ``device_placement=False`` (and ``cpu=True`` for
        processes without GPUs).
    device : str or torch.device
        ``accelerator.device``: the device of this process.
    unwrap_after_train : bool, default=True
        skorch's: give the plain network back after training.
    **kwargs
        Every parameter of :class:`~skcgcnn.{base}`.

    Notes
    -----
    Start one process per GPU with Accelerate's launcher, e.g. on one machine
    with 4 GPUs ``accelerate launch --multi_gpu --num_processes 4 train.py``
    (or ``accelerate config`` once, then ``accelerate launch train.py``).
    ``batch_size`` is per process: the effective batch is ``num_processes``
    times larger, so scale ``lr`` with it or divide ``batch_size``. Every
    process featurizes the structures it is given: featurize once, save
    the graphs (:func:`skcgcnn.graph_files.save_graphs`) and give each
    process the loaded graphs instead. Prediction is shared out the same
    way, and every process receives all predictions. Write the model from one
    process, ``if accelerator.is_main_process:``, with
    :func:`skcgcnn.persistence.save_model`: the file holds a plain
    :class:`~skcgcnn.{base}` that loads anywhere, with or without Accelerate.
    End the script with ``accelerator.wait_for_everyone()`` and
    ``accelerator.end_training()``: a process that exits while another still
    uses their process group can abort in PyTorch's teardown.
    An estimator holding an ``Accelerator`` does not pickle.

    Examples
    --------
    In one process (what each launched process runs is the same code):

    >>> from accelerate import Accelerator
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(40, random_state=0)
    >>> accelerator = Accelerator(cpu=True, device_placement=False)
    >>> net = Accelerated{base}(accelerator=accelerator, device=accelerator.device, max_epochs=2)
    >>> net.fit(X, {target}).predict(X[:3]).shape
    (3,)
"""


class AcceleratedCGCNNRegressor(_DataParallel, CGCNNRegressor):
    __doc__ = "CGCNNRegressor trained data-parallel by Accelerate (one process per GPU).\n" + _EXAMPLE.format(
        base="CGCNNRegressor", target="y"
    )


class AcceleratedCGCNNClassifier(_DataParallel, CGCNNClassifier):
    __doc__ = "CGCNNClassifier trained data-parallel by Accelerate (one process per GPU).\n" + _EXAMPLE.format(
        base="CGCNNClassifier", target="y > y.mean()"
    )
