"""K copies of one network trained as one module: ``PackedModel``.

Every parameter and buffer of the K copies is stacked on a leading axis [K, ...] (``torch.func.stack_module_state``)
and the forward runs ``functional_call`` under ``vmap``: a conv whose input and weight are both batched becomes one
grouped ``F.conv2d`` (groups × K), batch norm keeps per-copy statistics (its stacked running buffers are updated in
place through vmap), and ``randomness="different"`` gives each copy its own dropout masks. Any network equisweep
builds packs, whatever its group, architecture or relaxation, because nothing here knows its layers.

Copies never mix: every op is per copy, so an optimiser that acts elementwise (Adam, AdamW, SGD with weight decay)
over the stacked tensors is K independent optimisers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap


def _key(name: str) -> str:
    return name.replace(".", "/")  # module attribute names cannot hold dots


class PackedModel(nn.Module):
    """Images [K, B, C, H, W] -> logits [K, B, num_classes], copy k computed by ``copies[k]``'s weights."""

    def __init__(self, copies: Sequence[nn.Module]) -> None:
        super().__init__()
        if not copies:
            raise ValueError("a packed model needs at least one copy")
        params, buffers = stack_module_state(list(copies))
        self.copies = len(copies)
        if hasattr(copies[0], "group"):  # the network's symmetry group, as the LightningModule reads it
            self.group = copies[0].group
        # The architecture without storage: functional_call swaps every tensor in, so it never needs a device.
        # In lists: not submodules, no parameters. The blueprint never runs, so ``unpack`` copies no state a forward
        # under vmap left on a module (such as a partial conv's last mask).
        self._blueprint = [copy.deepcopy(copies[0]).to("meta")]
        self._template = [copy.deepcopy(self._blueprint[0])]
        self.param_names, self.buffer_names = list(params), list(buffers)
        for name, tensor in params.items():
            self.register_parameter(_key(name), nn.Parameter(tensor.detach()))
        for name, tensor in buffers.items():
            self.register_buffer(_key(name), tensor)

    @property
    def template(self) -> nn.Module:
        """The shared architecture; its attributes (training mode, batch-norm momentum) act on every copy. Its
        mode follows the pack's: Lightning restores a module's mode by setting ``training`` on each submodule,
        which the template, held outside the module tree, would not see."""
        template = self._template[0]
        if template.training != self.training:
            template.train(self.training)
        return template

    def stacked(self) -> Iterator[tuple[str, Tensor]]:
        """(name in one copy, stacked tensor [K, ...]) for every parameter and buffer."""
        for name in [*self.param_names, *self.buffer_names]:
            yield name, getattr(self, _key(name))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] != self.copies:
            raise ValueError(f"a packed model of {self.copies} copies expects [{self.copies}, B, ...], "
                             f"got {list(x.shape)}")
        params = {name: getattr(self, _key(name)) for name in self.param_names}
        buffers = {name: getattr(self, _key(name)) for name in self.buffer_names}
        return vmap(self._one, randomness="different")(params, buffers, x)

    def _one(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def per_copy(self, fn: Callable[..., Tensor], *batched: Tensor) -> Tensor:
        """``fn(net, *args)`` of every copy, stacked [K, ...]: ``fn`` sees the template holding copy k's tensors and
        slot k of each of ``batched`` [K, ...] (a training penalty of each copy, maybe on its batch)."""
        apply = _Apply(self.template, fn)
        tensors = {f"net.{name}": tensor for name, tensor in self.stacked()}
        return vmap(lambda t, *args: functional_call(apply, t, args), randomness="different")(tensors, *batched)

    def unpack(self, k: int) -> nn.Module:
        """Copy k as an ordinary network of its own (a copy of its tensors, in the template's training mode)."""
        net = copy.deepcopy(self._blueprint[0]).train(self.template.training)
        for name in self.param_names:
            owner, _, leaf = name.rpartition(".")
            net.get_submodule(owner).register_parameter(leaf, nn.Parameter(getattr(self, _key(name))[k].detach()
                                                                           .clone()))
        for name in self.buffer_names:
            owner, _, leaf = name.rpartition(".")
            module = net.get_submodule(owner)
            module.register_buffer(leaf, getattr(self, _key(name))[k].clone(),
                                   persistent=leaf not in module._non_persistent_buffers_set)
        return net

    def copy_state(self, k: int) -> dict[str, Tensor]:
        """Copy k's parameters and buffers by name (clones), as ``state_dict`` of copy k would hold them."""
        return {name: tensor[k].detach().clone() for name, tensor in self.stacked()}

    @torch.no_grad()
    def load_copy_state(self, k: int, state: dict[str, Tensor]) -> None:
        for name, tensor in self.stacked():
            tensor[k] = state[name]


class _Apply(nn.Module):
    """``fn(net, *args)`` as a forward, so ``functional_call`` can swap ``net``'s tensors in."""

    def __init__(self, net: nn.Module, fn: Callable[..., Tensor]) -> None:
        super().__init__()
        self.net, self.fn = net, fn

    def forward(self, *args: Tensor) -> Tensor:
        return self.fn(self.net, *args)
