"""The AMQP methods an asyncio channel sends: name -> (method id, argument signature in the
driver's notation, the methods that answer it).  Facts of the AMQP 0-9-1 specification;
the encoding itself is the driver's (:func:`.compat.dumps`), and the answers are decoded
with the driver's own tables (:func:`.compat.inbound_args`)."""

from __future__ import annotations

from amqp import spec

__all__ = ["CALLS", "WITH_CONTENT"]

CALLS: dict[str, tuple[tuple[int, int], str, frozenset[tuple[int, int]]]] = {
    "channel_open": (spec.Channel.Open, "s", frozenset({spec.Channel.OpenOk})),
    "channel_close": (spec.Channel.Close, "BsBB", frozenset({spec.Channel.CloseOk})),
    "flow": (spec.Channel.Flow, "b", frozenset({spec.Channel.FlowOk})),
    "exchange_declare": (spec.Exchange.Declare, "BssbbbbbF", frozenset({spec.Exchange.DeclareOk})),
    "exchange_delete": (spec.Exchange.Delete, "Bsbb", frozenset({spec.Exchange.DeleteOk})),
    "exchange_bind": (spec.Exchange.Bind, "BsssbF", frozenset({spec.Exchange.BindOk})),
    "exchange_unbind": (spec.Exchange.Unbind, "BsssbF", frozenset({spec.Exchange.UnbindOk})),
    "queue_declare": (spec.Queue.Declare, "BsbbbbbF", frozenset({spec.Queue.DeclareOk})),
    "queue_bind": (spec.Queue.Bind, "BsssbF", frozenset({spec.Queue.BindOk})),
    "queue_unbind": (spec.Queue.Unbind, "BsssF", frozenset({spec.Queue.UnbindOk})),
    "queue_purge": (spec.Queue.Purge, "Bsb", frozenset({spec.Queue.PurgeOk})),
    "queue_delete": (spec.Queue.Delete, "Bsbbb", frozenset({spec.Queue.DeleteOk})),
    "basic_qos": (spec.Basic.Qos, "lBb", frozenset({spec.Basic.QosOk})),
    "basic_consume": (spec.Basic.Consume, "BssbbbbF", frozenset({spec.Basic.ConsumeOk})),
    "basic_cancel": (spec.Basic.Cancel, "sb", frozenset({spec.Basic.CancelOk})),
    "basic_get": (spec.Basic.Get, "Bsb", frozenset({spec.Basic.GetOk, spec.Basic.GetEmpty})),
    "basic_recover": (spec.Basic.Recover, "b", frozenset({spec.Basic.RecoverOk})),
    "confirm_select": (spec.Confirm.Select, "b", frozenset({spec.Confirm.SelectOk})),
}
#: methods the broker sends with content frames after them
WITH_CONTENT = frozenset({spec.Basic.GetOk, spec.Basic.Return})
