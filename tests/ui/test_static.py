"""Serving the UI, without a model: the files, their types and caching, `--no-webui`, nothing from a CDN."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from llamacpy.cli.main import build_parser
from llamacpy.server.app import create_app
from llamacpy.server.context import ServerContext
from llamacpy.server.settings import ServerSettings
from llamacpy.ui import STATIC_DIR, static_file

JS_IMPORT = re.compile(r"""(?:import|from)\s*['"](\.{1,2}/[^'"]+)['"]""")


@pytest.fixture(scope="module")
def client() -> TestClient:
    # the model is never loaded: the API answers 503 "Loading model", the UI must still be served
    return TestClient(create_app(ServerContext(ServerSettings())))


def test_page_and_assets_are_served_while_the_model_loads(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"
    assert client.get("/", headers={"if-none-match": r.headers["etag"]}).status_code == 304
    assert client.get("/health").status_code == 503
    refs = re.findall(r'(?:src|href)="(ui/[^"]+)"', r.text)
    assert "ui/js/main.js" in refs
    for ref in refs:
        asset = client.get("/" + ref)
        assert asset.status_code == 200, ref
    js = client.get("/ui/js/main.js").headers["content-type"]
    assert js.startswith("text/javascript")
    assert client.get("/ui/vendor/purify.es.mjs").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/app.css").headers["content-type"].startswith("text/css")


def test_every_module_import_resolves(client):
    for path in sorted((STATIC_DIR / "js").glob("*.js")):
        for target in JS_IMPORT.findall(path.read_text()):
            url = "/ui/" + str((path.parent / target).resolve().relative_to(STATIC_DIR))
            assert client.get(url).status_code == 200, f"{path.name} imports {target}"


def test_nothing_comes_from_another_host():
    own = [STATIC_DIR / "index.html", STATIC_DIR / "app.css", *(STATIC_DIR / "js").glob("*.js")]
    for path in own:
        text = path.read_text()
        assert not re.search(r"""(src|href)=["']https?:|import\s*['"]https?:|from\s*['"]https?:|url\(\s*['"]?https?:""",
                             text), path.name
    for vendored in (STATIC_DIR / "vendor").glob("*.*js"):
        assert not re.search(r"""\bimport\s*\(?\s*['"]https?:""", vendored.read_text()), vendored.name


def test_unknown_and_escaping_paths_are_refused(client):
    assert client.get("/ui/nope.js").status_code == 404
    assert client.get("/ui/").status_code == 404
    assert static_file("/ui/../__init__.py") is None
    assert static_file("/ui/js/../../__init__.py") is None
    assert static_file("/ui/.hidden") is None
    assert client.post("/").status_code != 200  # only GET/HEAD reach the files


def test_no_webui_turns_the_page_off():
    args = build_parser().parse_args(["server", "--no-webui"])
    assert args.webui is False
    client = TestClient(create_app(ServerContext(ServerSettings(webui=False))))
    assert client.get("/").status_code == 404
    assert client.get("/ui/js/main.js").status_code != 200


def test_package_data_ships_the_static_files():
    """pyproject's package-data glob must cover every static file (a fresh pip install gets a working UI)."""
    import tomllib

    from llamacpy.ui import __file__ as ui_init

    root = STATIC_DIR.parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["llamacpy"]
    package = STATIC_DIR.parents[1]
    assert package.name == "llamacpy" and ui_init.startswith(str(package))
    covered = {p for g in globs for p in package.glob(g) if p.is_file()}
    shipped = {p for p in STATIC_DIR.rglob("*") if p.is_file()}
    assert shipped and shipped <= covered, sorted(str(p) for p in shipped - covered)
