import gzip
import hashlib
import http.server
import json
import threading

import numpy as np
import pandas as pd
import pytest

from skcgcnn.datasets import fetch_matbench, load_cgcnn_dir, load_csv, load_matbench, make_ionic_crystals


@pytest.fixture(scope="module")
def crystals():
    return make_ionic_crystals(6, random_state=3)


def write_cgcnn_dir(folder, structures, y, lines=None):
    folder.mkdir(exist_ok=True)
    for i, s in enumerate(structures):
        s.to(filename=str(folder / f"c{i}.cif"))
    rows = lines if lines is not None else [f"c{i},{v}" for i, v in enumerate(y)]
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_make_ionic_crystals_is_deterministic():
    (a, ya), (b, yb) = make_ionic_crystals(20, random_state=1), make_ionic_crystals(20, random_state=1)
    assert a == b and np.array_equal(ya, yb)
    assert not np.array_equal(ya, make_ionic_crystals(20, random_state=2)[1])
    assert np.all(ya < 0)


def test_load_cgcnn_dir_reads_structures_targets_and_ids(tmp_path, crystals):
    structures, y = crystals
    folder = write_cgcnn_dir(tmp_path / "d", structures, y)
    got, got_y, ids = load_cgcnn_dir(folder)
    assert ids == [f"c{i}" for i in range(len(y))]
    np.testing.assert_allclose(got_y, y)
    assert [s.composition for s in got] == [s.composition for s in structures]


def test_load_cgcnn_dir_multi_target_and_atom_init(tmp_path, crystals):
    structures, y = crystals
    folder = write_cgcnn_dir(tmp_path / "d", structures, y, [f"c{i},{v},{2 * v}" for i, v in enumerate(y)])
    table = {str(z): [float(z), 1.0] for z in range(1, 101)}
    (folder / "atom_init.json").write_text(json.dumps(table))
    _, got_y, _, features = load_cgcnn_dir(folder, return_atom_features=True)
    assert got_y.shape == (len(y), 2)
    assert features.table.shape[1] == 2 and features.table[8, 0] == 8


@pytest.mark.parametrize(
    "lines, message",
    [
        (["c0,1.0", "c0,2.0"], "id 'c0' repeats line 1"),
        (["c0,1.0", "c9,2.0"], "line 2: id 'c9' has no CIF file"),
        (["c0,1.0", "c1,abc"], "line 2: id 'c1' has a non-numeric target"),
        (["c0,1.0", "c1"], "line 2: id 'c1' has no target"),
        (["c0,1.0", "c1,1.0,2.0"], "line 2: id 'c1' has 2 targets"),
    ],
)
def test_load_cgcnn_dir_errors_name_the_id_and_line(tmp_path, crystals, lines, message):
    folder = write_cgcnn_dir(tmp_path / "d", crystals[0][:2], None, lines)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_cgcnn_dir(folder)


def test_load_csv_with_cif_text_query_and_missing_targets(tmp_path, crystals):
    structures, y = crystals
    frame = pd.DataFrame({
        "id": [f"m{i}" for i in range(len(y))],
        "cif": [s.to(fmt="cif") for s in structures],
        "e": y,
        "keep": [1, 1, 0, 1, 1, 1],
    })
    frame.loc[4, "e"] = np.nan
    path = tmp_path / "data.csv.gz"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"1 rows have no \['e'\] value \(e.g. ids \['m4'\]\)"):
        load_csv(path, target="e")
    got, got_y, ids = load_csv(path, target="e", query="keep == 1", missing="drop", n_jobs=2)
    assert ids == ["m0", "m1", "m3", "m5"]
    np.testing.assert_allclose(got_y, y[[0, 1, 3, 5]])
    assert got[2].composition == structures[3].composition
    texts, none_y, _ = load_csv(path, target=None, parse=False, nrows=2)
    assert none_y is None and texts[0].startswith("# generated using pymatgen")
    with pytest.raises(ValueError, match="no column"):
        load_csv(path, target="band_gap")


def write_matbench(path, structures, y):
    payload = {
        "index": [f"mb-test-{i:04d}" for i in range(len(y))],
        "columns": ["structure", "e_form"],
        "data": [[s.as_dict(), float(v)] for s, v in zip(structures, y)],
    }
    with gzip.open(path, "wt") as handle:
        json.dump(payload, handle)
    return path


def test_load_matbench(tmp_path, crystals):
    structures, y = crystals
    got, got_y, ids = load_matbench(write_matbench(tmp_path / "t.json.gz", structures, y))
    assert ids[0] == "mb-test-0000" and got == structures
    np.testing.assert_allclose(got_y, y)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a matbench file"):
        load_matbench(tmp_path / "bad.json")


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www, counting requests."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


def test_fetch_matbench_downloads_once_and_checks_the_checksum(tmp_path, local_server, crystals, monkeypatch):
    root, base, requests = local_server
    path = write_matbench(root / "task.json.gz", *crystals)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setenv("SKCGCNN_DATA", str(tmp_path / "cache"))

    with pytest.raises(ValueError, match="no checksum known"):
        fetch_matbench("my_task", url=f"{base}/task.json.gz")
    with pytest.raises(ValueError, match="does not match"):
        fetch_matbench("my_task", url=f"{base}/task.json.gz", sha256="0" * 64, verbose=False)
    assert not list((tmp_path / "cache" / "matbench").iterdir())

    structures, y, ids = fetch_matbench("my_task", url=f"{base}/task.json.gz", sha256=digest, verbose=False)
    assert len(structures) == len(crystals[0]) and (tmp_path / "cache/matbench/my_task.json.gz").is_file()
    again = fetch_matbench("my_task", url=f"{base}/task.json.gz", sha256=digest, verbose=False)
    np.testing.assert_array_equal(again[1], y)
    assert len(requests) == 2  # the bad-checksum attempt and the first good one; the cache serves the rest

    with pytest.raises(ValueError, match="delete it to download again"):
        fetch_matbench("my_task", sha256="1" * 64)


def test_load_csv_labels_and_stray_text(tmp_path, crystals):
    structures, y = crystals
    cifs = [s.to(fmt="cif") for s in structures]
    labels = pd.DataFrame({"id": range(6), "cif": cifs, "kind": list("abcabc")})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    assert list(load_csv(tmp_path / "labels.csv", target="kind", parse=False)[1]) == list("abcabc")
    stray = pd.DataFrame({"id": range(6), "cif": cifs, "e": ["1.0", "2", "x", "3", "4", "5"]})
    stray.to_csv(tmp_path / "stray.csv", index=False)
    with pytest.raises(ValueError, match=r"1 rows hold non-numeric targets among numeric ones \(e.g. ids \['2'\]\)"):
        load_csv(tmp_path / "stray.csv", target="e")
