"""What the suite's folders hold: the file names of a run folder and of a plan folder, and the
statuses a run and a planned run go through. No torch: the plan driver and the report read these.
"""

from __future__ import annotations

import enum

#: A run folder (``<arch>-<UTC stamp>-s<seed>/``).
RUN_JSON = "run.json"
CHECKPOINT = "checkpoint.pt"
GENERATOR = "generator.pt"
#: What ``generate()`` needs besides the generator (``GAN.sampling_state``), only where there is any.
SAMPLING = "sampling.pt"
SAMPLES = "samples.png"
LOSSES_CSV = "losses.csv"
METRICS_CSV = "metrics.csv"
TENSORBOARD = "tb"

#: Held by the process that writes a run or plan folder (see :func:`bench.storage.folder_lock`).
LOCK = ".gan-bench.lock"

#: A plan folder (``compare-<UTC stamp>/`` or ``sweep-<UTC stamp>/``): the plan and each run's status.
PLAN = "compare.json"

#: Column headers of losses.csv and TensorBoard tags of the conventional step outputs.
LOSS_TAGS = {"d_loss": "loss/D", "g_loss": "loss/G", "d_real": "D(x)", "d_fake": "D(G(z))"}


class Status(str, enum.Enum):
    """Where a run, or a planned run, stands. The values are what run.json and the plan hold."""

    PENDING = "pending"  # planned, not handed to a backend yet
    QUEUED = "queued"  # handed to a backend, not training yet
    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value

    @property
    def waiting(self) -> bool:
        """Planned and not started."""
        return self in (Status.PENDING, Status.QUEUED)

    @property
    def earned(self) -> bool:
        """Ended with a result to report (a diverged run reports what it reached)."""
        return self in (Status.COMPLETED, Status.DIVERGED)

    @property
    def finished(self) -> bool:
        """A planned run in this status is not started again (unless failed runs are retried)."""
        return self.earned or self is Status.FAILED
