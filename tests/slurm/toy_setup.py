"""Node-side setup for tests/test_slurm.py: a SLURM array task registers the toy method and data set
the way conftest does in-process (the task is a fresh python; it finds this module on PYTHONPATH)."""
import conftest


class _Patch:
    def setattr(self, obj, name, value, raising=True):
        setattr(obj, name, value)


def install() -> None:
    conftest.install_toy(_Patch())
