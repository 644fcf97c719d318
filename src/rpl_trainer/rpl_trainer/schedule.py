"""When the trainer node writes its outputs, counted in gradient updates (pure, no ROS).

The node exports a new model every ``export_every_updates`` gradient steps and saves a
checkpoint every ``checkpoint_every_updates`` (when it has a ``checkpoint_path``). Both
intervals run from the last write of that output, whatever caused it (the schedule, the
initial model, the end of an offline run, shutdown), and from the update count at start
(a resumed learner starts with its checkpoint's count).
"""

from __future__ import annotations


class SaveSchedule:
    """Which output is due after ``updates`` gradient steps.

    Example: exports every 100 updates, starting at 0: due at 100; written at 103 (a tick
    runs several updates), the next is due at 203.
    """

    def __init__(self, export_every: int, checkpoint_every: int | None, updates: int) -> None:
        """Args:
        export_every: Gradient steps between model exports (>= 1).
        checkpoint_every: Gradient steps between checkpoints (>= 1); None = no checkpoints.
        updates: Gradient steps the learner has made at start.
        """
        if export_every < 1 or (checkpoint_every is not None and checkpoint_every < 1):
            raise ValueError(
                f'intervals must be at least 1 update, got export_every={export_every}, '
                f'checkpoint_every={checkpoint_every}'
            )
        self.export_every = export_every
        self.checkpoint_every = checkpoint_every
        self.exported_at = updates  # gradient steps at the last export (or at start)
        self.checkpointed_at = updates  # ... at the last checkpoint (or at start)

    def export_due(self, updates: int) -> bool:
        """Whether ``export_every`` updates have run since the last export."""
        return updates - self.exported_at >= self.export_every

    def checkpoint_due(self, updates: int) -> bool:
        """Whether checkpoints are on and ``checkpoint_every`` updates have run since the
        last one."""
        every = self.checkpoint_every
        return every is not None and updates - self.checkpointed_at >= every

    def exported(self, updates: int) -> None:
        """A model was exported after ``updates`` gradient steps."""
        self.exported_at = updates

    def checkpointed(self, updates: int) -> None:
        """A checkpoint was saved after ``updates`` gradient steps."""
        self.checkpointed_at = updates
