"""Servers' own environments, for real: created with uv (and with pip), found again while the
requirement set is unchanged, created anew when it changes, and a failed install reported with the
package and the installer's own last lines. The packages are tiny (six), from the package registry
this machine is configured with."""

from __future__ import annotations

import json

import pytest

from harness.server import environments
from harness.server.environments import EnvironmentBuildError, EnvironmentSpec, InstallStep

pytestmark = pytest.mark.integration


def _spec(*packages: str, name: str = "tiny") -> EnvironmentSpec:
    return EnvironmentSpec(name=name, steps=(InstallStep(packages=packages),))


def _version_of(env: environments.Environment, package: str) -> str:
    import subprocess

    done = subprocess.run(
        [str(env.python), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.skipif(environments.find_uv() is None, reason="uv is a harness dependency; this venv lacks it")
def test_an_environment_is_created_reused_and_rebuilt_on_a_changed_requirement(tmp_path):
    said: list[str] = []
    first = environments.ensure(_spec("six==1.16.0"), say=said.append, root=tmp_path)
    assert first.created and first.installer == "uv"
    assert _version_of(first, "six") == "1.16.0"
    assert "six==1.16.0" in first.frozen
    record = json.loads((first.path / environments.RECORD_FILE).read_text())
    assert record["frozen"] == first.frozen and record["installer"] == "uv"
    assert any("creating the environment of tiny" in line for line in said)

    again = environments.ensure(_spec("six==1.16.0"), say=said.append, root=tmp_path)
    assert not again.created and again.path == first.path
    assert again.record()["reused"] is True

    changed = environments.ensure(_spec("six==1.17.0"), say=said.append, root=tmp_path)
    assert changed.created and changed.path != first.path
    assert _version_of(changed, "six") == "1.17.0"
    # The first one is still there for the release that needs it.
    assert environments.existing(_spec("six==1.16.0"), root=tmp_path) is not None


def test_pip_fills_an_environment_when_asked(tmp_path):
    env = environments.ensure(_spec("six==1.16.0", name="tiny-pip"), say=lambda _: None, installer="pip", root=tmp_path)
    assert env.created and env.installer == "pip"
    assert _version_of(env, "six") == "1.16.0"
    assert "six==1.16.0" in env.frozen


def test_a_build_cut_short_is_built_again(tmp_path):
    spec = _spec("six==1.16.0", name="cut")
    (tmp_path / spec.folder_name() / "venv").mkdir(parents=True)  # no environment.json: never finished
    assert environments.existing(spec, root=tmp_path) is None
    env = environments.ensure(spec, say=lambda _: None, root=tmp_path)
    assert env.created and _version_of(env, "six") == "1.16.0"


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_failed_install_names_the_package_and_quotes_the_installer(tmp_path, installer):
    if installer == "uv" and environments.find_uv() is None:
        pytest.skip("uv is a harness dependency; this venv lacks it")
    spec = _spec("six==1.16.0", "harness-no-such-package-anywhere==9.9.9", name="broken")
    with pytest.raises(EnvironmentBuildError) as caught:
        environments.ensure(spec, say=lambda _: None, installer=installer, root=tmp_path)
    message = str(caught.value)
    assert "the environment of broken failed installing" in message
    assert "harness-no-such-package-anywhere" in message  # the step, and the installer's own words
    assert "install.log" in message
    # Nothing half-built is taken for a ready environment next time.
    assert environments.existing(spec, root=tmp_path) is None
