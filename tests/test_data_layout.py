"""One data root for both datasets, as docs/data.md describes: RAF-DB's basic/ and AffectNet's files
side by side under the same --data-root."""
import shutil

import pytest

from bench.config.settings import DataConfig
from bench.data.affectnet import catalog as affectnet_catalog
from bench.data.rafdb import catalog as rafdb_catalog

from test_data_affectnet import make_manually_annotated, make_npy_release
from test_data_rafdb import make_rafdb


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_DATA", raising=False)


@pytest.mark.parametrize("release", ["manually_annotated", "train_set/val_set"])
def test_one_root_holds_rafdb_basic_and_affectnet(tmp_path, release):
    root = tmp_path / "data"
    make_rafdb(tmp_path / "raf")
    shutil.move(tmp_path / "raf" / "RAF-DB" / "basic", root / "basic")          # root/basic/EmoLabel/...
    if release == "manually_annotated":                    # root/Manually_Annotated*/ and the CSV lists
        make_manually_annotated(root, list(range(7)), list(range(7)))
    else:                                                  # root/train_set/, root/val_set/
        make_npy_release(root, {"train_set": list(range(7)), "val_set": list(range(7))})
    raf = rafdb_catalog(DataConfig(root=str(root)))
    aff = affectnet_catalog(DataConfig(root=str(root)))
    assert raf.root == root / "basic" and len(raf.splits["train"]) == 14
    assert aff.options["release"] == release and len(aff.splits["test"]) == 7
