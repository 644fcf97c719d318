"""rpl_bringup packaging: launch/ and config/ are installed from paths anchored at the package.

A ``../..`` data_files path made ``colcon build --symlink-install`` in a ``ws/src/<repo>/``
workspace create stray ``ws/launch`` and ``ws/config`` links; the package now reaches the
repository's folders through committed relative symlinks inside it.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

# Prints setup()'s data_files instead of running setup (cwd: the package folder).
_DATA_FILES = (
    'import json, setuptools\n'
    "setuptools.setup = lambda **kw: print(json.dumps(kw['data_files']))\n"
    "exec(compile(open('setup.py').read(), 'setup.py', 'exec'), {'__file__': 'setup.py'})\n"
)


@pytest.fixture(scope='module')
def package_dir(repo_root: pathlib.Path) -> pathlib.Path:
    return repo_root / 'src' / 'rpl_bringup'


def _data_files(package_dir: pathlib.Path) -> list[tuple[str, list[str]]]:
    out = subprocess.run(
        [sys.executable, '-c', _DATA_FILES],
        cwd=package_dir,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [(dest, sources) for dest, sources in json.loads(out.stdout)]


def test_data_files_stay_inside_the_package(package_dir: pathlib.Path, repo_root: pathlib.Path):
    data_files = _data_files(package_dir)
    sources = [s for _, group in data_files for s in group]
    assert not [s for s in sources if '..' in pathlib.PurePath(s).parts or os.path.isabs(s)]
    by_dest = dict(data_files)
    launch_files = sorted(p.name for p in (repo_root / 'launch').glob('*.launch.py'))
    config_files = sorted(
        p.name for p in (repo_root / 'config').iterdir() if p.suffix in ('.yaml', '.xml')
    )
    assert sorted(os.path.basename(s) for s in by_dest['share/rpl_bringup/launch']) == (
        launch_files
    )
    assert sorted(os.path.basename(s) for s in by_dest['share/rpl_bringup/config']) == (
        config_files
    )
    for name in ('launch', 'config'):  # committed relative links to the repository folders
        link = package_dir / name
        assert link.is_symlink() and os.readlink(link) == f'../../{name}'
        assert link.resolve() == (repo_root / name).resolve()


def test_wheel_holds_launch_and_config_files(
    package_dir: pathlib.Path, repo_root: pathlib.Path, tmp_path: pathlib.Path
):
    # A plain (non-editable) install gets exactly what the wheel holds. Built from a copy
    # laid out as a workspace's ws/src/<repo>/ (links kept), so no build/ lands in the tree.
    repo = tmp_path / 'ws' / 'src' / 'repo'
    shutil.copytree(repo_root / 'launch', repo / 'launch')
    shutil.copytree(repo_root / 'config', repo / 'config')
    ignore = shutil.ignore_patterns('build', '*.egg-info', '__pycache__')
    shutil.copytree(package_dir, repo / 'src' / 'rpl_bringup', symlinks=True, ignore=ignore)
    subprocess.run(
        [
            sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
            '--no-build-isolation', str(repo / 'src' / 'rpl_bringup'), '-w', str(tmp_path),
        ],
        check=True,
        timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob('rpl_bringup-*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    data = '.data/data/share/rpl_bringup/'
    launch = {n.split(data, 1)[1] for n in names if data + 'launch/' in n}
    config = {n.split(data, 1)[1] for n in names if data + 'config/' in n}
    assert launch == {f'launch/{p.name}' for p in (repo_root / 'launch').glob('*.launch.py')}
    assert 'config/slippery_push.yaml' in config and 'config/fastdds_loopback.xml' in config
    assert any(n.endswith(data + 'package.xml') for n in names)
    assert not any('..' in n for n in names)
    assert sorted(p.name for p in (tmp_path / 'ws').iterdir()) == ['src']  # no stray links
