"""Every LaTeX table dcrepro writes compiles with pdflatex and booktabs alone (texlive-latex-recommended)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dcrepro.runner import build_plan, execute
from dcrepro.spec import list_papers, load_spec
from dcrepro.store import Store
from dcrepro.tables import esc, render_table

REPO = Path(__file__).resolve().parents[1]
COMMITTED_TEX = sorted((REPO / "paper_tables").glob("**/*.tex"))
COMMITTED_STORE = REPO / "results" / "store.sqlite"
needs_pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None,
                                    reason="pdflatex not installed (apt-get install texlive-latex-recommended)")


def compile_tex(table_tex: str, workdir: Path) -> None:
    """Wrap a table in a minimal article and compile it; fail with the end of pdflatex's log."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                                     + table_tex + "\n\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=workdir,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and (workdir / "doc.pdf").exists(), proc.stdout[-2000:]


@needs_pdflatex
def test_escape_compiles_every_special(tmp_path):
    nasty = r"a\b & 50% $x$ #1 under_score {b} ~t ^c <l> |p| ± ≈ ✓ ✗ ▼ ▲ ∅ · α ≤ ≥ — é 中"
    compile_tex(esc(nasty), tmp_path / "doc")
    assert "_" not in esc("pu_time_s").replace(r"\_", "")


@needs_pdflatex
def test_toy_table_compiles_with_display_names(toy_project, tmp_path):
    spec = toy_project / "benchmarks" / "toy.toml"
    text = spec.read_text().replace('metrics = ["acc", "nmi"]\n[tables.table1.rows]',
                                    'metrics = ["acc", "nmi", "time_s"]\n[tables.table1.rows]')
    spec.write_text(text.replace('"Bad" = "toy:bad"', '"Bad" = "toy:bad"\n' + r"'Bad & 50%_{x}^~#$\' = " + '"toy:bad"'))
    execute(build_plan("toy", budget="quick"), device="cpu", progress=False)
    with Store() as s:
        out = render_table("toy", "table1", "quick", s)
    header = next(line for line in out["md"].splitlines() if line.startswith("| Method"))
    assert "blobs ACC" in header
    assert "time (s)" in header and "TIME_S" not in header
    assert " & ACC & NMI & time (s) &" in out["tex"]
    assert r"Bad \& 50\%\_\{x\}" in out["tex"]
    compile_tex(out["tex"], tmp_path / "doc")


@needs_pdflatex
@pytest.mark.parametrize("path", COMMITTED_TEX, ids=[str(p.relative_to(REPO)) for p in COMMITTED_TEX])
def test_committed_tex_compiles(path, tmp_path):
    compile_tex(path.read_text(), tmp_path)


@needs_pdflatex
@pytest.mark.skipif(not COMMITTED_STORE.exists(), reason="no committed store results/store.sqlite")
@pytest.mark.parametrize("paper", list_papers())
def test_fresh_render_of_committed_store_compiles(paper, tmp_path):
    with Store(COMMITTED_STORE) as s:
        for table in load_spec(paper).tables:
            compile_tex(render_table(paper, table, "reduced", s)["tex"], tmp_path / table)


def test_every_metric_has_a_display_name():
    from dcrepro.metrics import METRICS, display_name

    assert [name for name, m in METRICS.items() if not m.display] == []
    assert display_name("pu_time_s") == "PU time (s)" and display_name("acc") == "ACC"
