"""Every page in a real Chromium against the real gunicorn server: upload, forms, keyboard, phone width."""

from __future__ import annotations

import json
import re

import pytest

from tests.auth_support import bundled_manifests, key_for, valid_record
from tests.browser.conftest import Page, start_server
from tests.conftest import SAMPLES, needs_shared
from tests.server_process import multipart

TABULAR = [m for m in bundled_manifests() if m.features is not None]
TIMEOUT = 30_000


def api_prediction(server, sample) -> tuple[int, dict]:
    """What the API itself answers for a file: the page must show the same."""
    body, content_type = multipart("file", sample.name, sample.read_bytes())
    status, answer, _ = server.request("POST", "/models/pneumonia/predict", body, {"Content-Type": content_type})
    return status, answer


def test_xray_page_shows_each_sample_and_clears_the_old_result(tab, server):
    needs_shared(SAMPLES)
    page = tab.page
    page.goto("/pages/pneumonia/try")
    info = json.loads(page.evaluate("fetch('/models/pneumonia').then(r => r.text())"))
    result = page.locator("#result")
    samples = sorted(SAMPLES.glob("*.jpeg"))
    assert len(samples) >= 4
    for sample in samples:
        page.set_input_files("#file", str(sample))
        assert result.is_hidden() and result.inner_text() == ""  # the previous answer is gone at once
        page.click("button[type=submit]")
        page.wait_for_selector("#result .label", timeout=TIMEOUT)
        status, answer = api_prediction(server, sample)
        assert status == 200
        label_name = info["label_names"].get(answer["prediction"], answer["prediction"])
        assert result.locator(".label").inner_text() == label_name
        text = result.inner_text()
        assert "%" in text and "1.000" not in text and "P(pneumonia)" not in text
        for label in info["labels"]:
            assert info["label_names"].get(label, label) in text
        if info["explains"]:  # the heatmap is drawn over a copy of the upload
            heatmap = result.locator("figure.overlay img.heatmap")
            heatmap.wait_for(timeout=TIMEOUT)
            assert heatmap.get_attribute("src").startswith("data:image/png;base64,")
    tab.shot("xray-result")


def test_xray_page_shows_the_refusal_of_an_image_that_is_not_an_x_ray(tab, tmp_path):
    from PIL import Image

    grey = tmp_path / "grey.png"
    Image.new("L", (256, 256), 128).save(grey)
    page = tab.page
    page.goto("/pages/pneumonia/try")
    page.set_input_files("#file", str(grey))
    page.click("button[type=submit]")
    page.wait_for_selector("#result.error", timeout=TIMEOUT)
    expected_refusal(tab)
    text = page.locator("#result").inner_text()
    assert "not_a_chest_xray" in text and "chest X-ray" in text and "PNEUMONIA" not in text
    tab.shot("xray-refusal")


def test_xray_page_shows_the_error_from_the_body(tab, server, tmp_path):
    fake = tmp_path / "notes.jpeg"
    fake.write_bytes(b"this is not an image at all")
    status, answer = api_prediction(server, fake)
    assert status >= 400
    page = tab.page
    page.goto("/pages/pneumonia/try")
    page.set_input_files("#file", str(fake))
    page.click("button[type=submit]")
    page.wait_for_selector("#result.error", timeout=TIMEOUT)
    expected_refusal(tab)
    text = page.locator("#result").inner_text()
    assert answer["error"]["message"] in text and answer["error"]["code"] in text
    tab.shot("xray-error")


def expected_refusal(tab) -> None:
    """Chromium logs a refused fetch as a console error; drop exactly that one line, nothing else."""
    refused = [e for e in tab.errors if e.startswith("Failed to load resource: the server responded with a status "
                                                      "of 4") and re.search(r"/predict(\?explain=true)?\)$", e)]
    assert len(refused) == 1, tab.errors
    tab.errors.remove(refused[0])


def fill(page, manifest, record: dict) -> None:
    """Put a record into the model's form (fields left out stay empty)."""
    for feature in manifest.features:
        control = page.locator(f'[data-feature="{feature.name}"]')
        value = record.get(feature.name)
        if feature.type in ("category", "boolean"):
            if value is None:
                control.select_option(index=0)  # "Choose…"
            else:  # by position: "" can be a real category, as well as the placeholder's value
                options = ["0", "1"] if feature.type == "boolean" else feature.categories
                control.select_option(index=options.index(str(int(value)) if feature.type == "boolean" else value) + 1)
        else:
            control.fill("" if value is None else str(value))


@pytest.mark.parametrize("manifest", TABULAR, ids=[m.name for m in TABULAR])
def test_tabular_form_predicts_and_places_server_errors_next_to_fields(tab, manifest):
    page = tab.page
    page.goto(f"/pages/{manifest.name}/try")
    record = valid_record(manifest)
    fill(page, manifest, record)
    page.click("button[type=submit]")
    page.wait_for_selector("#result .label", timeout=TIMEOUT)
    shown = page.locator("#result .label").inner_text()
    assert shown in set(manifest.label_names.values()) | set(manifest.labels)
    assert "%" in page.locator("#result").inner_text()
    tab.shot(f"form-{manifest.name}-ok")

    numeric = next(f for f in manifest.features if f.type in ("integer", "number") and f.maximum is not None)
    required = next(f for f in manifest.features if f.required and f.name != numeric.name)
    broken = {**record, numeric.name: numeric.maximum + 1}
    broken.pop(required.name)
    fill(page, manifest, broken)
    assert page.locator("#result").is_hidden()  # editing the form removed the old answer
    page.click("button[type=submit]")
    page.wait_for_selector("#form-errors:not([hidden])", timeout=TIMEOUT)
    expected_refusal(tab)
    for feature in (numeric, required):
        field = page.locator(f'.field[data-field="{feature.name}"]')
        error = field.locator(".field-error")
        assert error.is_visible() and error.inner_text().strip()
        assert field.locator("[data-feature]").get_attribute("aria-invalid") == "true"
    assert page.locator("#result").is_hidden()
    focused = page.evaluate("document.activeElement.dataset.feature")
    assert focused in (numeric.name, required.name)
    others = [f for f in manifest.features if f.name not in (numeric.name, required.name)]
    for feature in others:
        assert page.locator(f'.field[data-field="{feature.name}"] .field-error').is_hidden()
    tab.shot(f"form-{manifest.name}-errors")


def test_heart_form_works_with_the_keyboard_only(tab):
    manifest = next(m for m in TABULAR if m.name == "heart_failure")
    page = tab.page
    page.goto("/pages/heart_failure/try")
    record = {"Age": 61, "Sex": "M", "ChestPainType": "ASY", "RestingBP": 140, "Cholesterol": 0, "FastingBS": 1,
              "RestingECG": "Normal", "MaxHR": 120, "ExerciseAngina": "Y", "Oldpeak": 1.5, "ST_Slope": "Flat"}
    for _ in range(40):  # Tab from the top of the page to the first field
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "f1":
            break
    for feature in manifest.features:
        assert page.evaluate("document.activeElement.dataset.feature") == feature.name
        value = record[feature.name]
        if feature.type == "category":
            steps = feature.categories.index(value) + 1  # past the "Choose…" option
            for _ in range(steps):
                page.keyboard.press("ArrowDown")
        elif feature.type == "boolean":
            for _ in range(int(value) + 1):
                page.keyboard.press("ArrowDown")
        else:
            page.keyboard.type(str(value))
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "submit"
    page.keyboard.press("Enter")
    page.wait_for_selector("#result .label", timeout=TIMEOUT)
    assert page.locator("#result .label").inner_text() in manifest.label_names.values()
    tab.shot("form-keyboard")


@pytest.mark.parametrize("path", ["/", "/pages/heart_failure", "/pages/heart_failure/try", "/pages/pneumonia/try",
                                  "/pages/aids/try", "/docs"])
def test_pages_fit_a_390px_phone(browser, server, path):
    tab = Page(browser, f"http://127.0.0.1:{server.port}", width=390, height=844)
    try:
        tab.page.goto(path)
        tab.page.wait_for_load_state("networkidle")
        if path == "/docs":
            tab.page.wait_for_selector(".swagger-ui .info .title", timeout=TIMEOUT)
        if path == "/pages/heart_failure":
            tab.page.wait_for_selector("#drift table", timeout=TIMEOUT)
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390
        tab.shot("phone" + path.replace("/", "_"))
    finally:
        tab.close()


def test_model_page_shows_plots_and_drift(tab):
    page = tab.page
    page.goto("/pages/heart_failure")
    page.wait_for_selector("#drift table", timeout=TIMEOUT)
    for image in page.locator("img").all():
        image.scroll_into_view_if_needed()  # the plots load lazily, below the model card
        page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=image.element_handle(), timeout=TIMEOUT)
    assert page.locator("#drift tbody tr").count() == 12  # 11 features and the prediction
    tab.shot("model-heart_failure")


def test_key_is_asked_for_and_kept_in_the_tab_only(browser):
    key, line = key_for("heart_failure", name="browser")
    server = start_server({"SLIMSERVE_API_KEYS": line})
    tab = Page(browser, f"http://127.0.0.1:{server.port}")
    try:
        manifest = next(m for m in TABULAR if m.name == "heart_failure")
        page = tab.page
        page.goto("/pages/heart_failure/try")
        fill(page, manifest, valid_record(manifest))
        page.click("button[type=submit]")
        page.wait_for_selector("#result.error", timeout=TIMEOUT)
        assert "API key" in page.locator("#result").inner_text()
        expected_refusal(tab)
        page.fill("#credential", key)
        page.click("button[type=submit]")
        page.wait_for_selector("#result .label", timeout=TIMEOUT)
        stored = page.evaluate("JSON.stringify([localStorage, sessionStorage, document.cookie])")
        assert key not in stored and key[17:] not in stored
        tab.shot("form-with-key")
        page.reload()
        assert page.input_value("#credential") == ""
    finally:
        tab.close()
        server.stop()
