"""The dashboard: login, the users and user pages, the playground, the reports, isolation between
tenants and escaping, over HTTP (TestClient) and in headless Debian Chromium (Selenium) against
the app served by uvicorn, with the real embedded model answering in the playground."""

from __future__ import annotations

import hashlib
import http.client
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from p13n.data import Document, Sourced, User
from p13n.ingest import ingest
from p13n.server.app import create_app
from p13n.server.reports import report_file, report_folder
from p13n.server.state import ServerConfig, ServerState
from p13n.store import StoredAdapter, WriteSet
from p13n.store.base import DEFAULT_TENANT
from tests.server_support import live_server

SCRIPT = '<script>alert("owned")</script>'


@dataclass
class Served:
    app: FastAPI
    state: ServerState
    key: str
    """A key of tenant ``default``, which holds the demo users."""
    other_key: str
    """A key of tenant ``other``, which holds only ``olga``."""
    reports: Path
    secret: Path
    """A file next to (outside) ``reports``."""


def _plot(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4, 2.5))
    axis.barh(["rag", "profile"], [0.04, -0.01], color=["#2a9d8f", "#e76f51"])
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _reports(root: Path) -> None:
    run = root / "lamp_suite"
    run.mkdir(parents=True)
    (run / "summary.md").write_text(
        "# Benchmark `lamp_suite`\n\n"
        f"A note with raw HTML: {SCRIPT}\n\n"
        "| method | accuracy |\n|:--|--:|\n| baseline | 0.41 |\n| rag | 0.47 |\n",
        encoding="utf-8",
    )
    (run / "results.json").write_text('{"tasks": []}\n', encoding="utf-8")
    (run / "report.html").write_text(f"<html>{SCRIPT}</html>", encoding="utf-8")
    _plot(run / "gain.png")
    (root / "empty").mkdir()  # no summary, results or plot: not a report


def _served(tmp_path: Path, demo_url: str) -> Served:
    database = tmp_path / "p13n.db"
    shutil.copyfile(demo_url.removeprefix("sqlite:///"), database)
    reports = tmp_path / "reports"
    _reports(reports)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the dashboard", encoding="utf-8")
    config = ServerConfig(
        environment="development", store=f"sqlite:///{database}", reports_dir=reports
    )
    app = create_app(config)
    state: ServerState = app.state.p13n
    assert state.store.tenant == DEFAULT_TENANT  # the demo users are in tenant "default"
    state.tenants.create_tenant(DEFAULT_TENANT)
    key, _ = state.tenants.create_key(DEFAULT_TENANT, "dashboard test")
    state.tenants.create_tenant("other")
    other_key, _ = state.tenants.create_key("other")
    ingest(state.tenant_store("other"), [Sourced(User(id="olga"), "test")], encoder=None)
    return Served(app, state, key, other_key, reports, secret)


@pytest.fixture
def served(tmp_path: Path, demo_url: str) -> Served:
    return _served(tmp_path, demo_url)


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    with TestClient(served.app) as test_client:
        yield test_client


def _login(client: TestClient, key: str) -> None:
    response = client.post("/dashboard/login", data={"key": key}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/dashboard"


def _add(served: Served, *records: User | Document, tenant: str = DEFAULT_TENANT) -> None:
    store = served.state.tenant_store(tenant)
    ingest(store, [Sourced(r, "test") for r in records], encoder=None)


# ------------------------------------------------------------------------------- login
PAGES = [
    "/dashboard",
    "/dashboard/users/ada",
    "/dashboard/playground",
    "/dashboard/reports",
    "/dashboard/reports/lamp_suite",
    "/dashboard/reports/lamp_suite/files/gain.png",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_without_a_tenant_key_redirects_to_the_login_form(
    client: TestClient, path: str
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer p13n_0123_wrong"},
        {"Authorization": "Bearer p13n-dev-admin-key"},  # the admin key is not a tenant's
    ):
        response = client.get(path, headers=headers, follow_redirects=False)
        assert response.status_code == 303, (path, headers)
        assert response.headers["location"] == "/dashboard/login"
    response = client.post("/dashboard/playground", data={"user": "ada"}, follow_redirects=False)
    assert response.status_code == 303


def test_login_attempts_from_one_address_are_limited(client: TestClient, served: Served) -> None:
    from p13n.server.routes.dashboard import LOGIN_ATTEMPTS_PER_MINUTE

    for _ in range(LOGIN_ATTEMPTS_PER_MINUTE):
        wrong = client.post("/dashboard/login", data={"key": "p13n_guess_secret"})
        assert wrong.status_code == 401
    refused = client.post("/dashboard/login", data={"key": served.key}, follow_redirects=False)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "Too many login attempts" in refused.text and "set-cookie" not in refused.headers
    # The API's keys are counted apart: the tenant's own budget is untouched.
    api = client.get("/v1/users", headers={"Authorization": f"Bearer {served.key}"})
    assert api.status_code == 200


def test_login_sets_a_strict_httponly_cookie_and_logout_clears_it(
    client: TestClient, served: Served
) -> None:
    form = client.get("/dashboard/login")
    assert form.status_code == 200
    assert 'name="key"' in form.text and 'type="password"' in form.text
    assert "dashboard.css" in form.text and "Logout" not in form.text

    for wrong in ("", "p13n_nothere_secret", served.state.admin_key, served.key + "x"):
        refused = client.post("/dashboard/login", data={"key": wrong}, follow_redirects=False)
        assert refused.status_code == 401
        assert 'role="alert"' in refused.text and "set-cookie" not in refused.headers

    response = client.post("/dashboard/login", data={"key": served.key}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"p13n_key={served.key};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # plain http in the test; https sets it

    page = client.get("/dashboard")
    assert page.status_code == 200
    assert '<strong id="tenant-name">default</strong>' in page.text
    for link in ("Users", "Playground", "Reports", "Logout"):
        assert f">{link}</a>" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")

    out = client.get("/dashboard/logout", follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
    assert 'p13n_key=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_a_bearer_key_works_without_the_cookie(client: TestClient, served: Served) -> None:
    page = client.get("/dashboard", headers={"Authorization": f"Bearer {served.key}"})
    assert page.status_code == 200 and "/dashboard/users/ada" in page.text


def test_the_stylesheet_is_served_and_nothing_else_from_static(client: TestClient) -> None:
    css = client.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "--accent" in css.text
    for name in ("missing.css", "..%2Fdashboard.py", "%2e%2e"):
        assert client.get(f"/dashboard/static/{name}").status_code == 404


# ------------------------------------------------------------------------------- users
def _row(html: str, user_id: str) -> list[str]:
    """The cells of a user's row in the users table."""
    match = re.search(
        rf'href="/dashboard/users/{re.escape(user_id)}">.*?</tr>', html, flags=re.DOTALL
    )
    assert match is not None, f"no row for {user_id}"
    return re.findall(r'<td class="num">(\d+)</td>', match.group(0))


def test_users_lists_counts_pages_and_searches(client: TestClient, served: Served) -> None:
    _login(client, served.key)
    page = client.get("/dashboard").text
    assert "(6)" in page  # the demo users; olga, of tenant "other", is not among them
    assert "olga" not in page
    # documents, interactions, preferences, personas
    assert _row(page, "ada") == ["6", "6", "2", "1"]
    assert _row(page, "fern") == ["0", "1", "0", "0"]
    assert "occupation: software engineer" in page

    _add(served, *(User(id=f"zz-{n:03d}", attributes={"n": n}) for n in range(30)))
    first = client.get("/dashboard").text
    assert "(36)" in first and "page 1 of 2" in first and 'rel="next"' in first
    assert "zz-018" in first and "zz-019" not in first  # 25 a page, by id
    second = client.get("/dashboard?page=2").text
    assert "zz-019" in second and "zz-029" in second and "/dashboard/users/ada" not in second
    assert 'rel="prev"' in second
    assert client.get("/dashboard?page=oops").status_code == 200  # lenient: page 1

    found = client.get("/dashboard", params={"q": "ch"}).text
    assert "(1 matching “ch”)" in found
    assert _row(found, "chloe") == ["6", "6", "2", "1"] and "/users/ada" not in found
    nothing = client.get("/dashboard", params={"q": "<b>"}).text
    assert "&lt;b&gt;" in nothing and "<b>" not in nothing


def _adapter(user_id: str) -> tuple[StoredAdapter, bytes]:
    weights = bytes(range(256)) * 8
    entry = StoredAdapter(
        adapter_id=f"user:{user_id}:chat:lora",
        user_id=user_id,
        persona_id=None,
        task="chat",
        method="lora",
        base_model="SmolLM2-135M-Instruct",
        base_hash="0" * 64,
        config={"r": 8},
        data_size=12,
        metrics={"loss_last_epoch": 1.23456, "steps": 9},
        size_bytes=len(weights),
        weights_sha256=hashlib.sha256(weights).hexdigest(),
        created_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
    )
    return entry, weights


def test_a_user_page_shows_everything_stored_about_them(client: TestClient, served: Served) -> None:
    store = served.state.tenant_store(DEFAULT_TENANT)
    store.put_adapter(*_adapter("ada"))
    _login(client, served.key)
    page = client.get("/dashboard/users/ada")
    assert page.status_code == 200
    html = page.text
    assert '<span id="user-id">ada</span>' in html
    assert "<dt>occupation</dt><dd>software engineer</dd>" in html
    titles = re.findall(
        r'<tr class="document"><td class="nowrap">[^<]*</td><td>[^<]*</td>\s*<td>([^<]*)</td>', html
    )
    assert titles == [d.title for d in store.documents("ada")]  # newest first
    assert titles[0] == "The Deep Stack"
    assert 'Designing Quiet Systems <span class="muted">(book-systems)</span>' in html
    assert "Summarize the outage for the team." in html
    assert "<strong>concise-pragmatic</strong> — Writes short, direct, practical text" in html
    adapters = html[html.index('id="adapters"') :]
    assert "user:ada:chat:lora" in adapters and "lora" in adapters
    assert "2.0 KB" in adapters and ">12<" in adapters and "2026-01-02 03:04" in adapters
    assert "loss_last_epoch: 1.235" in adapters and "steps: 9" in adapters

    long = "word " * 200
    _add(served, Document(user_id="ada", kind="note", title="Long", text=long.strip()))
    shown = client.get("/dashboard/users/ada").text
    assert "word word" in shown and long.strip() not in shown and "…" in shown


def test_unknown_users_get_a_404_page(client: TestClient, served: Served) -> None:
    _login(client, served.key)
    for path in ("/dashboard/users/nobody", "/dashboard/users/", "/dashboard/users/a/b"):
        page = client.get(path)
        assert page.status_code == 404, path
        assert "<h1>Not found</h1>" in page.text and "Logout" in page.text


def test_user_ids_with_slashes_and_odd_characters_link_to_their_page(
    client: TestClient, served: Served
) -> None:
    # Ids may no longer hold '/', but a store written by an older version may: as stored then.
    legacy = "team/x?y#z"
    document = Document.model_construct(
        id="d", user_id=legacy, kind="text", title=None, text="a slash", timestamp=None, metadata={}
    )
    stored = WriteSet(users=[User.model_construct(id=legacy, attributes={})], documents=[document])
    served.state.tenant_store(DEFAULT_TENANT).write(stored)
    _login(client, served.key)
    listing = client.get("/dashboard", params={"q": "team"}).text
    link = re.search(r'href="(/dashboard/users/team[^"]*)"', listing)
    assert link is not None and link.group(1) == "/dashboard/users/team/x%3Fy%23z"
    page = client.get(link.group(1))
    assert page.status_code == 200 and "a slash" in page.text


def test_everything_stored_is_html_escaped(client: TestClient, served: Served) -> None:
    _add(
        served,
        User(id="mallory", attributes={"bio": '<img src=x onerror="alert(1)">'}),
        Document(user_id="mallory", title="<b>bold</b>", text=f"hello {SCRIPT}"),
    )
    _login(client, served.key)
    listing = client.get("/dashboard").text
    assert "onerror" in listing and "<img src=x" not in listing
    page = client.get("/dashboard/users/mallory").text
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in page
    assert "<script" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page


def test_another_tenants_key_sees_none_of_the_first_tenants_users(
    client: TestClient, served: Served
) -> None:
    _login(client, served.other_key)
    listing = client.get("/dashboard").text
    assert '<strong id="tenant-name">other</strong>' in listing
    assert "(1)" in listing and "/dashboard/users/olga" in listing
    assert "ada" not in listing
    assert client.get("/dashboard/users/ada").status_code == 404
    assert client.get("/dashboard/users/olga").status_code == 200
    refused = client.post("/dashboard/playground", data={"user": "ada", "input": "hi"})
    assert refused.status_code == 404 and "No user &#39;ada&#39;" in refused.text
    # and the first tenant's key does not see olga
    client.cookies.clear()
    _login(client, served.key)
    assert client.get("/dashboard/users/olga").status_code == 404


# ------------------------------------------------------------------------------- playground
def test_the_playground_form_offers_the_registered_choices(
    client: TestClient, served: Served
) -> None:
    from p13n.prompt import builders
    from p13n.retrieve import retrievers

    _login(client, served.key)
    page = client.get("/dashboard/playground", params={"user": "bruno"}).text
    for name in retrievers.names():
        assert f'<option value="{name}"' in page
    for name in builders.names():
        assert (f'<option value="{name}"' in page) == (name != "none")
    assert 'name="user" list="user-ids" value="bruno"' in page
    assert '<option value="chloe">' in page  # the user suggestions
    assert 'name="max_tokens" type="number" min="1" max="128" value="48"' in page


def test_the_playground_refuses_bad_input_before_loading_the_model(served: Served) -> None:
    client = TestClient(served.app)  # no lifespan, so no warm-up loads the model
    _login(client, served.key)
    cases = [
        ({"user": "ada", "input": ""}, 400, "Give a user and an input."),
        ({"user": "ada", "input": "hi", "retriever": "nope"}, 400, "unknown retriever"),
        ({"user": "ada", "input": "hi", "prompt": "nope"}, 400, "unknown prompt builder"),
        ({"user": "ada", "input": "hi", "level": "nope"}, 400, "granularity.level"),
        ({"user": "nobody", "input": "hi"}, 404, "No user &#39;nobody&#39;"),
    ]
    for data, status, message in cases:
        response = client.post("/dashboard/playground", data=data)
        assert response.status_code == status, (data, response.text[-500:])
        assert message in response.text, data
        assert 'role="alert"' in response.text
    assert served.state._llm is None  # none of them loaded the model


# ------------------------------------------------------------------------------- reports
def test_reports_are_listed_and_rendered(client: TestClient, served: Served) -> None:
    _login(client, served.key)
    listing = client.get("/dashboard/reports").text
    assert '/dashboard/reports/lamp_suite"' in listing and "gain.png" in listing
    assert "/dashboard/reports/empty" not in listing

    page = client.get("/dashboard/reports/lamp_suite")
    assert page.status_code == 200
    html = page.text
    assert (
        "<table>" in html
        and '<td class="align-left">rag</td>' in html
        and '<td class="align-right">0.47' in html
    )
    assert "<h1>Benchmark <code>lamp_suite</code></h1>" in html
    assert "&lt;script&gt;" in html and "<script" not in html  # raw HTML in markdown is escaped
    assert '<img src="/dashboard/reports/lamp_suite/files/gain.png"' in html
    assert "files/results.json" in html and "files/report.html" not in html

    png = client.get("/dashboard/reports/lamp_suite/files/gain.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    data = client.get("/dashboard/reports/lamp_suite/files/results.json")
    assert data.status_code == 200 and data.json() == {"tasks": []}

    for missing in ("/dashboard/reports/nope", "/dashboard/reports/empty/files/x.png"):
        assert client.get(missing).status_code == 404


def test_no_report_is_served_from_outside_the_reports_folder(
    client: TestClient, served: Served
) -> None:
    _login(client, served.key)
    (served.reports / "lamp_suite" / "link.txt").symlink_to(served.secret)
    (served.reports / "outside").symlink_to(served.secret.parent, target_is_directory=True)
    attempts = [
        "/dashboard/reports/lamp_suite/files/..%2F..%2Fsecret.txt",
        "/dashboard/reports/lamp_suite/files/%2e%2e/%2e%2e/secret.txt",
        "/dashboard/reports/lamp_suite/files/%2Ftmp%2Fsecret.txt",
        f"/dashboard/reports/lamp_suite/files/{served.secret}",
        "/dashboard/reports/%2e%2e/files/secret.txt",
        "/dashboard/reports/lamp_suite/files/link.txt",  # a link that leads out
        "/dashboard/reports/outside/files/secret.txt",
        "/dashboard/reports/lamp_suite/files/report.html",  # never served: not a plot or data
    ]
    for path in attempts:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "not for the dashboard" not in response.text
    assert client.get("/dashboard/reports/%2e%2e").status_code == 404

    root = served.reports.resolve()
    assert report_folder(root, "..") is None and report_folder(root, ".") is None
    assert report_folder(root, "lamp_suite") == root / "lamp_suite"
    assert report_file(root, "lamp_suite", "../../secret.txt") is None
    assert report_file(root, "lamp_suite", str(served.secret)) is None
    assert (
        report_file(root, "lamp_suite", "../lamp_suite/gain.png")
        == root / "lamp_suite" / "gain.png"
    )


# ------------------------------------------------------------------------------- browser
@pytest.fixture
def live(served: Served) -> Iterator[str]:
    """The app served by uvicorn on a free local port, in a background thread."""
    with live_server(served.app) as url:
        yield url


def _browser() -> WebDriver:
    chromium, driver = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    if not chromium.exists() or not driver.exists():
        pytest.fail(
            f"{chromium} or {driver} is missing: install Debian's chromium and chromium-driver "
            "(make installs them as root)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,1100", "--disable-gpu"):  # fmt: skip
        options.add_argument(argument)
    try:
        return webdriver.Chrome(service=Service(str(driver)), options=options)
    except WebDriverException as error:
        pytest.fail(f"headless chromium did not start through {driver}: {error.msg}")


def _check_screenshot(path: Path, copy: Path) -> None:
    """A real PNG of the page: plausible size, and not one flat colour."""
    import matplotlib.image

    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, len(data)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] >= 600 and pixels.shape[1] >= 1000, pixels.shape
    assert float(pixels[..., :3].std()) > 0.05  # text, tables and colours, not a blank page
    shutil.copyfile(path, copy)


@pytest.mark.slow
def test_the_dashboard_in_a_real_browser(
    live: str, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Log in through the form, open the users, a user, run the playground once on the
    embedded model, and take screenshots."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    driver = _browser()
    try:
        driver.get(f"{live}/dashboard/users/ada")
        assert driver.current_url == f"{live}/dashboard/login"  # redirected
        driver.find_element(By.NAME, "key").send_keys("p13n_wrong_key")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        error = WebDriverWait(driver, 30).until(
            expected_conditions.presence_of_element_located((By.CLASS_NAME, "error"))
        )
        assert "not a live tenant API key" in error.text
        driver.find_element(By.NAME, "key").send_keys(served.key)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        # The server may still be warming up (loading the model) beside this: wait for the page.
        WebDriverWait(driver, 30).until(expected_conditions.url_to_be(f"{live}/dashboard"))
        cookie = driver.get_cookie("p13n_key")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert driver.execute_script("return document.cookie") == ""  # HttpOnly: not readable

        assert driver.find_element(By.ID, "tenant-name").text == "default"
        links = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "a.user-link")]
        assert links[:3] == ["ada", "bruno", "chloe"]
        driver.find_element(By.LINK_TEXT, "ada").click()
        assert driver.current_url == f"{live}/dashboard/users/ada"
        rows = driver.find_elements(By.CSS_SELECTOR, "#documents tr.document")
        assert len(rows) == 6 and "The Deep Stack" in rows[0].text
        colour = driver.find_element(By.CSS_SELECTOR, "header.top").value_of_css_property(
            "background-color"
        )
        assert colour == "rgba(31, 41, 51, 1)"  # the stylesheet loaded
        _check_screenshot(_shot(driver, tmp_path / "user.png"), Path("/tmp/dashboard_user.png"))

        driver.find_element(By.LINK_TEXT, "Try in the playground").click()
        assert driver.find_element(By.NAME, "user").get_attribute("value") == "ada"
        Select(driver.find_element(By.NAME, "retriever")).select_by_value("bm25")
        tokens = driver.find_element(By.NAME, "max_tokens")
        tokens.clear()
        tokens.send_keys("24")
        driver.find_element(By.NAME, "input").send_keys("Which book should I read next?")
        driver.find_element(By.ID, "run").click()
        WebDriverWait(driver, 300).until(
            expected_conditions.presence_of_element_located((By.ID, "personalized"))
        )
        baseline = driver.find_element(By.CSS_SELECTOR, "#baseline .answer-text").text
        personal = driver.find_element(By.CSS_SELECTOR, "#personalized .answer-text").text
        assert baseline.strip() and personal.strip()
        retrieved = driver.find_elements(By.CSS_SELECTOR, "#retrieved tr.retrieved-item")
        assert 1 <= len(retrieved) <= 4
        assert driver.find_element(By.ID, "level").text.startswith("user")
        assert "generate" in driver.find_element(By.ID, "timings").text
        assert driver.find_element(By.NAME, "max_tokens").get_attribute("value") == "24"
        driver.set_window_size(1280, 1500)  # the answers and what was retrieved, in one shot
        _check_screenshot(
            _shot(driver, tmp_path / "playground.png"), Path("/tmp/dashboard_playground.png")
        )

        driver.find_element(By.LINK_TEXT, "Reports").click()
        driver.find_element(By.LINK_TEXT, "lamp_suite").click()
        image = driver.find_element(By.CSS_SELECTOR, "figure.plot img")
        assert driver.execute_script("return arguments[0].naturalWidth", image) == 320

        driver.find_element(By.LINK_TEXT, "Logout").click()
        assert driver.current_url == f"{live}/dashboard/login"
        driver.get(f"{live}/dashboard")
        assert driver.current_url == f"{live}/dashboard/login"
    finally:
        driver.quit()

    # uvicorn passes a literal ``..`` through unnormalized: still nothing from outside.
    host, port = live.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request(
        "GET",
        "/dashboard/reports/lamp_suite/files/../../secret.txt",
        headers={"Authorization": f"Bearer {served.key}"},
    )
    answer = connection.getresponse()
    assert answer.status == 404 and b"not for the dashboard" not in answer.read()
    connection.close()


def _shot(driver: WebDriver, path: Path) -> Path:
    assert driver.save_screenshot(str(path))
    return path
