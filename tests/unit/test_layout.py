"""Where things live: deployments never share a key or a local folder, and every process is started the
same way (python -m bootstrap)."""
import subprocess
import sys
from pathlib import Path

from domain import layout
from domain.layout import Layout

ROOT = Path(__file__).resolve().parents[2]


def keys(place: Layout) -> list[str]:
    return [place.snapshot("v1"), place.catalog("v1"), layout.bundle(place.catalog("v1")), place.report("v1", "r.json"),
            place.model("1.0"), place.lineage_remote()]


def paths(place: Layout) -> list[Path]:
    return [place.pipeline_cache(), place.serving_cache(), place.checkpoints(), place.faust_state(), place.lineage(),
            place.scratch("bodies"), place.ops("ns")]


def test_two_deployments_share_no_key_and_keep_their_namespaced_state_apart(tmp_path):
    a, b = Layout("a", tmp_path / "work"), Layout("b", tmp_path / "work")
    assert all(key.startswith("a/") for key in keys(a)) and not set(keys(a)) & set(keys(b))
    # The log-bound state (checkpoints of the API's projections, the worker's tables) is per deployment
    # even in one work dir: each lives and dies with its deployment's topics.
    assert a.checkpoints() != b.checkpoints() and a.faust_state() != b.faust_state()
    assert all(path.is_relative_to(tmp_path / "work") for path in paths(a))


def test_a_bundle_lives_inside_its_catalog_and_a_model_file_inside_its_folder(tmp_path):
    catalog = Layout("d", tmp_path).catalog("v3")
    assert layout.bundle(catalog).startswith(catalog + "/")
    assert layout.model_file(tmp_path / "m").parent == tmp_path / "m"


def test_bootstrap_names_the_processes_it_starts_when_asked_for_another():
    done = subprocess.run([sys.executable, "-m", "bootstrap", "nonsense"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0
    assert "provision,worker,pipeline,api" in done.stderr
