"""The server-rendered pages: index, model page (card, metrics, plots, versions), forms and /docs."""

from __future__ import annotations

import re
from html import escape
from html.parser import HTMLParser

import pytest

from slimserve import create_app
from slimserve.paths import BUNDLED_MODELS
from slimserve.web.card import render_markdown
from tests.conftest import write_fake_model


@pytest.fixture(scope="module")
def client():
    app = create_app({"MODEL_PATH": str(BUNDLED_MODELS / "pneumonia" / "1.0.0" / "model.h5"),
                      "MODEL_REPOSITORY": str(BUNDLED_MODELS), "LOAD_ASYNC": False, "AUDIT_SINK": "off",
                      "RATELIMIT_ENABLED": False, "AUTO_COMPILE": False})
    return app.test_client()


class Labels(HTMLParser):
    """Collects the ids of form controls and the `for` targets of labels."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: dict[str, dict] = {}
        self.labelled: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("input", "select", "textarea"):
            self.controls[attrs["id"]] = attrs
        if tag == "label":
            self.labelled.add(attrs.get("for"))


def test_index_lists_every_served_model_with_both_links(client):
    html = client.get("/").get_data(as_text=True)
    names = [m["name"] for m in client.get("/models").get_json()["models"]]
    assert len(names) >= 8
    for name in names:
        assert f'href="/pages/{name}"' in html and f'href="/pages/{name}/try"' in html


def test_every_tabular_model_gets_a_labelled_field_per_feature(client):
    for model in client.get("/models").get_json()["models"]:
        if not model["features"]:
            continue
        html = client.get(f"/pages/{model['name']}/try").get_data(as_text=True)
        parser = Labels()
        parser.feed(html)
        features = {c["data-feature"]: c for c in parser.controls.values() if "data-feature" in c}
        assert set(features) == {f["name"] for f in model["features"]}
        assert set(parser.controls) <= parser.labelled  # a label for every input
        for feature in model["features"]:
            control = features[feature["name"]]
            assert control["aria-describedby"].split() == [f"{control['id']}-hint", f"{control['id']}-error"]
            if feature["type"] == "category":
                options = re.findall(rf'<select id="{control["id"]}".*?</select>', html, flags=re.S)[0]
                assert all(f'<option value="{escape(c)}">' in options for c in feature["categories"])


def test_zero_means_missing_and_units_are_hinted(client):
    html = client.get("/pages/heart_failure/try").get_data(as_text=True)
    cholesterol = re.search(r'data-field="Cholesterol".*?</div>', html, flags=re.S).group(0)
    assert "(mg/dL)" in cholesterol and "0 means not measured" in cholesterol and "0 to 700" in cholesterol


def test_model_page_shows_metrics_plots_and_versions(client):
    html = client.get("/pages/heart_failure").get_data(as_text=True)
    assert "On the held-out test split" in html and "accuracy" in html
    for plot in ("roc.png", "calibration.png", "confusion_matrix.png"):
        assert f'src="/pages/heart_failure/plots/{plot}"' in html
        with client.get(f"/pages/heart_failure/plots/{plot}") as response:  # a file response: close it
            assert response.mimetype == "image/png"
    assert "1.0.0 (served)" in html
    assert 'data-url="/models/heart_failure/drift"' in html


def test_only_listed_plots_are_served(client):
    for name in ("manifest.json", "model.onnx", "..%2F..%2Fpneumonia%2F1.0.0%2Fmanifest.json"):
        assert client.get(f"/pages/heart_failure/plots/{name}").status_code == 404


def test_model_card_is_rendered_with_everything_escaped(tmp_path, fake_runtimes):
    folder = tmp_path / "p"
    write_fake_model(folder)
    (folder / "MODEL_CARD.md").write_text("# Intended use\n\nScreening **research** only. <script>alert(1)</script>\n"
                                          "- [paper](https://example.org/x)\n- [bad](javascript:alert(1))\n")
    app = create_app({"MODEL_PATH": str(folder), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False,
                      "AUTO_COMPILE": False})
    html = app.test_client().get("/pages/pneumonia").get_data(as_text=True)
    assert "<h3>Intended use</h3>" in html and "<strong>research</strong>" in html
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert '<a href="https://example.org/x" rel="noopener noreferrer">paper</a>' in html
    assert 'href="javascript' not in html


def test_markdown_quotes_cannot_break_out_of_a_link():
    html = str(render_markdown('[x](https://a.example/"onmouseover="alert(1))'))
    assert 'onmouseover="' not in html


def test_docs_serve_swagger_ui_from_the_installed_package(client):
    html = client.get("/docs").get_data(as_text=True)
    assert 'src="/static/swagger/swagger-ui-bundle.js"' in html and 'data-url="/openapi.json"' in html
    assert "//" not in re.sub(r"https?://[^\"']*w3\.org[^\"']*", "", html.split("<body>")[0]).replace("<!doctype", "")
    with client.get("/static/swagger/swagger-ui-bundle.js") as bundle:
        assert bundle.status_code == 200 and len(bundle.data) > 500_000
    assert client.get("/static/swagger/oauth2-redirect.html").status_code == 404  # only the listed files


def test_credentials_field_only_for_models_behind_access_control(tmp_path, fake_runtimes):
    from tests.conftest import write_fake_tabular_model

    write_fake_model(tmp_path / "pneumonia")
    write_fake_tabular_model(tmp_path / "heart")
    app = create_app({"MODEL_PATH": str(tmp_path), "DEFAULT_MODEL": "pneumonia", "RUNTIMES": fake_runtimes,
                      "LOAD_ASYNC": False, "AUTO_COMPILE": False, "AUTH": "required", "AUDIT_SINK": "off"})
    client = app.test_client()
    assert 'id="credential"' in client.get("/pages/heart/try").get_data(as_text=True)
    assert 'id="credential"' not in client.get("/pages/pneumonia/try").get_data(as_text=True)


def test_card_tables_and_continued_list_items_render_escaped():
    html = str(render_markdown("| a | <b>x</b> |\n|---|---|\n| 1 | `2` |\n\n- first line\n  goes on\n- second"))
    assert "<table><thead><tr><th scope=\"col\">a</th><th scope=\"col\">&lt;b&gt;x&lt;/b&gt;</th></tr></thead>" in html
    assert "<tbody><tr><td>1</td><td><code>2</code></td></tr></tbody></table>" in html
    assert "<li>first line goes on</li>" in html and "<li>second</li>" in html and "|" not in html
