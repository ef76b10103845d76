"""The timeline: scrub through a training run's recorded epochs (slider, keys, playback) and record within a budget."""

from .bar import TimelineBar
from .markers import EpochMarkers
from .recording import SnapshotControls

__all__ = ["EpochMarkers", "SnapshotControls", "TimelineBar"]
