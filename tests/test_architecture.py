"""The architecture's contracts hold on the real tree: tenancy filters only in authz/, the import layers,
no import cycles. Each lint is also shown to catch a planted violation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sensorhub.authz.access import Access, AccessRule
from sensorhub.authz.scope import VisibleEntities, visible_entities
from sensorhub.lint import tenancy

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "sensorhub"
sys.path.insert(0, str(ROOT / "tools"))

import import_cycles  # noqa: E402


def test_the_tree_has_no_tenancy_filter_outside_authz() -> None:
    assert tenancy.check_tree(PACKAGE) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "q = select(Entity).where(Entity.org_id == org_id)",
        "q = select(Series).where(Series.workspace_id.in_(ids))",
        "q = s.query(Entity).filter_by(org_id=o)",
        "rows = s.scalars(select(Membership).where(Membership.user_id == uid))",
        "q = select(Grant).where(Grant.org_id == o)",
        "q = select(Entity).where(access.sql_filter(Entity.org_id, Entity.workspace_id, Entity.entity_id))",
    ],
)
def test_the_tenancy_lint_rejects_a_hand_written_filter(snippet: str) -> None:
    found = tenancy.check_source(f"def read(s, access, org_id, ids, o, uid):\n    {snippet}\n")
    assert {v.line for v in found} == {2}


def test_the_tenancy_lint_accepts_authz_and_marked_lines() -> None:
    ok = (
        "def read(s, access, org):\n"
        "    q = select(Entity).where(visible_entities(access).where())\n"
        "    # tenancy: an operator command names its organisation\n"
        "    q = select(Entity).where(Entity.org_id == org.id)\n"
        "    if e.org_id == org.id:  # plain Python on a loaded row is not a query\n"
        "        pass\n"
    )
    assert tenancy.check_source(ok) == []


def test_the_tenancy_lint_fails_the_command_on_a_planted_violation(tmp_path: Path) -> None:
    (tmp_path / "reads.py").write_text("def f(s, o):\n    return select(Entity).where(Entity.org_id == o)\n")
    run = subprocess.run(
        [sys.executable, "-m", "sensorhub.lint.tenancy", str(tmp_path)], capture_output=True, text=True
    )
    assert run.returncode == 1 and "reads.py:2: organisation filter" in run.stderr


def test_only_authz_makes_visible_entities() -> None:
    access = Access((AccessRule("org-1"),))
    assert isinstance(visible_entities(access), VisibleEntities)
    with pytest.raises(TypeError):
        VisibleEntities(access, object())


def test_narrowing_never_widens() -> None:
    v = visible_entities(Access((AccessRule("org-1"),)))
    assert v.within(org_id="org-1").within(org_id="org-2").is_empty


def test_import_contracts_hold() -> None:
    run = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_no_module_import_cycle() -> None:
    assert import_cycles.import_cycles() == []


def test_the_cycle_check_finds_a_planted_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "planted"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from planted import b\n")  # function-level counts too
    (pkg / "b.py").write_text("from planted import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles.import_cycles("planted") == [["planted.a", "planted.b"]]
