"""Data sets: loaders for files on disk, a cached matbench fetcher, and generated demo crystals."""

from .fetch import MATBENCH_TASKS, fetch_matbench, get_data_home
from .generated import make_ionic_crystals
from .loaders import load_cgcnn_dir, load_csv, load_matbench

__all__ = [
    "MATBENCH_TASKS",
    "fetch_matbench",
    "get_data_home",
    "load_cgcnn_dir",
    "load_csv",
    "load_matbench",
    "make_ionic_crystals",
]
