"""Start-up settings of a node that must hear a lockstep run from its first message.

A lockstep sim bridge waits for ``min_subscribers`` subscribers of ``observation`` and then
starts at once. A listener that records or counts the rest of the control path (the bag
recorder, the episode monitor) therefore subscribes to ``observation`` last: once the topics
it waits for (each node's docs say which) have a matched publisher, or ``startup_timeout_s``
has passed, and ``settle_s`` more
(:meth:`rpl_interfaces.base_node.RplNode.after_publishers_match`).

Pure Python: no rclpy.
"""

from __future__ import annotations

import dataclasses

from rpl_interfaces.params import describe


@dataclasses.dataclass(frozen=True)
class ListenerStartupConfig:
    """The two start-up parameters; listener configs derive from this class."""

    startup_timeout_s: float = dataclasses.field(
        default=10.0,
        metadata=describe(
            'Wait at most this long (s) for a publisher on each topic this node waits for '
            '(see the node) before subscribing to observation (which lets a waiting sim '
            'bridge start); 0 = do not wait',
            range=(0.0, 600.0),
        ),
    )
    settle_s: float = dataclasses.field(
        default=1.0,
        metadata=describe(
            'Then wait this long (s) before subscribing to observation: seeing a publisher '
            'does not mean that it has already seen this subscriber (DDS discovery is not '
            'symmetric), and messages sent before it has are not received',
            range=(0.0, 60.0),
        ),
    )
