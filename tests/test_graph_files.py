"""Crystal graphs saved once and loaded memory-mapped give the same training and predictions."""

import numpy as np
import pytest

from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.graph_files import load_graphs, save_graphs


@pytest.fixture(scope="module")
def graphs():
    X, y = make_ionic_crystals(60, random_state=2)
    return CrystalGraphTransformer(nbr_rule="shared").transform(X), y


def test_saved_graphs_load_memory_mapped_and_train_and_predict_the_same(tmp_path, graphs):
    g, y = graphs
    back = load_graphs(save_graphs(g, tmp_path / "set.graphs"))
    assert all(isinstance(getattr(back, name), np.memmap) for name in ("nbr_idx", "nbr_dist", "atomic_numbers"))
    for name in ("atomic_numbers", "nbr_count", "nbr_shared", "nbr_idx", "nbr_dist", "offsets", "edge_offsets"):
        np.testing.assert_array_equal(getattr(back, name), getattr(g, name))
    assert back.settings == g.settings
    params = dict(max_epochs=2, batch_size=16, atom_fea_len=16, h_fea_len=16, random_state=0)
    from_memory = CGCNNRegressor(**params).fit(g[:40], y[:40])
    from_disk = CGCNNRegressor(**params).fit(back[:40], y[:40])
    np.testing.assert_array_equal(from_memory.predict(g[40:]), from_disk.predict(back[40:]))
    np.testing.assert_array_equal(from_memory.predict(back[40:]), from_memory.predict(g[40:]))


def test_graph_folders_are_not_overwritten_and_damage_is_named(tmp_path, graphs):
    g, _ = graphs
    path = save_graphs(g, tmp_path / "set.graphs")
    with pytest.raises(ValueError, match="exists; pass force=True"):
        save_graphs(g[:5], path)
    assert len(load_graphs(save_graphs(g[:5], path, force=True))) == 5
    np.save(path / "nbr_idx.npy", np.zeros(3, dtype=np.int32))
    with pytest.raises(ValueError, match="set.graphs: the arrays do not agree"):
        load_graphs(path)
    (path / "nbr_dist.npy").unlink()
    with pytest.raises(ValueError, match="set.graphs: a file is missing or damaged"):
        load_graphs(path)
    with pytest.raises(ValueError, match="not a folder of crystal graphs"):
        load_graphs(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="is not a folder of crystal graphs; it is left as it is"):
        save_graphs(g, tmp_path / "mine", force=True)
    assert not list(tmp_path.glob(".*.tmp"))


def test_chunks_written_as_they_come_make_the_same_folder(tmp_path, graphs):
    g, _ = graphs
    produced = []

    def chunks():
        for start in range(0, len(g), 7):
            produced.append(start)
            yield g[start : start + 7]

    back = load_graphs(save_graphs(chunks(), tmp_path / "chunked.graphs"))
    assert produced == list(range(0, 60, 7))
    for name in ("atomic_numbers", "nbr_count", "nbr_shared", "nbr_idx", "nbr_dist", "offsets", "edge_offsets"):
        np.testing.assert_array_equal(getattr(back, name), getattr(g, name))
        assert getattr(back, name).dtype == getattr(g, name).dtype
    other = CrystalGraphTransformer(radius=6.0).transform(make_ionic_crystals(3, random_state=0)[0])
    with pytest.raises(ValueError, match="chunk 1 was built with"):
        save_graphs(iter([g[:3], other]), tmp_path / "mixed.graphs")
    with pytest.raises(ValueError, match="no crystal graphs to save"):
        save_graphs(iter([]), tmp_path / "empty.graphs")
    assert not (tmp_path / "mixed.graphs").exists() and not list(tmp_path.glob(".*.tmp"))


def test_chunks_read_back_in_order_without_a_map(tmp_path, graphs):
    from skcgcnn.graph_files import iter_graphs

    g, _ = graphs
    path = save_graphs(g, tmp_path / "set.graphs")
    chunks = list(iter_graphs(path, chunk_size=25))
    assert [len(c) for c in chunks] == [25, 25, 10]
    assert not any(isinstance(c.nbr_dist, np.memmap) for c in chunks)
    joined = type(g).concatenate(chunks)
    for name in ("atomic_numbers", "nbr_count", "nbr_shared", "nbr_idx", "nbr_dist", "offsets", "edge_offsets"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(g, name))
    np.save(path / "nbr_dist.npy", g.nbr_dist[:-5])
    with pytest.raises(ValueError, match="nbr_dist.npy: holds fewer values than the offsets need"):
        list(iter_graphs(path, chunk_size=25))
