"""The relay's deterministic core: accept a Conversions API request (validate, prepare, record, forward)
and deliver queued events later (store and forward). The HTTP surface is ``agent.relay.app``."""

from tools.relay.accept import PixelPolicy, RelayRequest, accept_batch, pixel_policy
from tools.relay.answers import RelayAnswer
from tools.relay.forward import ForwardReport, PixelForward, forward_pending

__all__ = ["ForwardReport", "PixelForward", "PixelPolicy", "RelayAnswer", "RelayRequest", "accept_batch",
           "forward_pending", "pixel_policy"]
