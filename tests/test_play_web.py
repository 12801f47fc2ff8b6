"""`lmrl play --web` in a real headless browser: each way an episode ends (a deal, a walk-away, an
early end, a free chat's `/end`, a cleared conversation) saves the conversation the page shows, and
nothing else; the page keeps its API list and Gradio's analytics off, and logs people in with --auth.

Needs Gradio and Selenium (`make install-web`) and Chromium with its driver (Debian: `apt-get install
chromium chromium-driver`). Without them the tests skip, saying what is missing; with
LMRL_REQUIRE_BROWSER=1 (`make test-web`, CI) they fail instead. With LMRL_SCREENSHOTS=FOLDER the deal
is photographed there at first load, mid-episode and finished (docs/guides/img/)."""

import importlib.util
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lmrl.data import validate_row
from lmrl.play import Player
from lmrl.tasks import get_task

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
MISSING = [what for what, found in (
    ("Gradio (make install-web, or pip install 'lmrl[web]')", importlib.util.find_spec("gradio")),
    ("Selenium (make install-web, or pip install selenium)", importlib.util.find_spec("selenium")),
    ("Chromium (Debian: apt-get install chromium)", CHROMIUM),
    ("its driver (Debian: apt-get install chromium-driver)", DRIVER),
) if not found]
if MISSING and os.environ.get("LMRL_REQUIRE_BROWSER") == "1":
    pytest.fail(f"LMRL_REQUIRE_BROWSER=1, but the browser tests need {', '.join(MISSING)}.", pytrace=False)
if MISSING:
    pytest.skip(f"the browser tests need {', '.join(MISSING)}", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from lmrl.play_web import EMPTY_REPLY, build_app, serve  # noqa: E402

# Gradio's queue keeps event statistics with pandas options and arguments that pandas 3 deprecates
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")
SECRET_PATH = "/srv/models/negotiation/chai (/srv/recipes/chai.yaml)"  # the row's agent: never on the page


class Scripted:
    """A policy that says the given replies in turn, and keeps what it was shown."""

    def __init__(self, *replies):
        self.replies, self.seen = list(replies), []

    def __call__(self, conversations):
        self.seen += conversations
        return [self.replies.pop(0) for _ in conversations]


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, tmp_path, monkeypatch):
    """`page(player)` serves the play page for `player` on loopback and opens it; the rows go to
    tmp_path/played.jsonl."""
    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)
    apps = []

    def open_page(player: Player, seed: int = 3, auth=None) -> "Page":
        app = build_app(player, tmp_path / "played.jsonl", seed=seed)
        serve(app, auth=auth, block=False)
        apps.append(app)
        return Page(browser, app, tmp_path / "played.jsonl", login=auth is None)

    yield open_page
    for app in apps:
        app.close()


class Page:
    """The play page as a person sees it, through the browser."""

    def __init__(self, driver, app, out: Path, login: bool = True):
        self.driver, self.app, self.out = driver, app, out
        assert app.local_url.startswith("http://127.0.0.1:")  # loopback only
        driver.get(app.local_url)
        if login:
            self.wait(lambda: "You are" in self.text("briefing") or "Free chat" in self.text("briefing"), 60)

    def wait(self, condition, timeout: float = 30):
        """Wait until `condition()` is true (the page re-renders as it goes: a stale element is a retry)."""
        return WebDriverWait(self.driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda _: condition())

    def element(self, elem_id: str):
        return self.driver.find_element(By.ID, elem_id)

    def read(self, elem_id: str, script: str):
        """`script` on the element with this id (`el`, or null), run in one go in the page."""
        return self.driver.execute_script(f"const el = document.getElementById(arguments[0]); {script}", elem_id)

    def text(self, elem_id: str) -> str:
        """The element's text; a Markdown's without Gradio's progress timer."""
        return (self.read(elem_id, "if (!el) return ''; const md = el.querySelector(\"[data-testid='markdown']\");"
                          " return (md || el).textContent;") or "").strip()

    def enabled(self, elem_id: str) -> bool:
        return self.read(elem_id, "return el !== null && !el.disabled;")

    def visible(self, elem_id: str) -> bool:
        return self.read(elem_id, "return el !== null && el.checkVisibility();")

    def bubbles(self) -> list[tuple[str, str, bool]]:
        """Every bubble of the chat in order: (role, text, whether it is the outcome box), read at once."""
        return [(role, text.strip(), outcome) for role, text, outcome in self.driver.execute_script(
            "return [...document.querySelectorAll(\"#chat [data-testid='user'], #chat [data-testid='bot']\")]"
            ".map(b => [b.dataset.testid === 'user' ? 'user' : 'assistant', b.textContent,"
            " b.querySelector('.thought-group') !== null])")]

    def conversation(self) -> list[tuple[str, str]]:
        """The conversation the page shows, without the outcome box."""
        return [(role, text) for role, text, outcome in self.bubbles() if not outcome]

    def outcome(self) -> str:
        boxes = [text for _, text, outcome in self.bubbles() if outcome]
        return boxes[-1] if boxes else ""

    def say(self, line: str) -> None:
        """Type a line and send it; wait until the page has answered (the chat or the status changed)."""
        before = (self.bubbles(), self.text("status"))
        box = self.driver.find_element(By.CSS_SELECTOR, "#line textarea")
        box.clear()
        box.send_keys(line)
        self.element("send").click()
        self.wait(lambda: (self.bubbles(), self.text("status")) != before)

    def press(self, elem_id: str, until) -> None:
        self.element(elem_id).click()
        self.wait(until)

    def clear_chat(self, until) -> None:
        self.press_css("#chat button[aria-label='Clear']", until)

    def press_css(self, selector: str, until) -> None:
        self.driver.execute_script("arguments[0].click();", self.driver.find_element(By.CSS_SELECTOR, selector))
        self.wait(until)

    def rate(self, stars: int) -> None:
        self.driver.execute_script("arguments[0].click();",
                                   self.driver.find_element(By.CSS_SELECTOR, f"#rating input[value='{stars}']"))

    def save(self) -> None:
        self.press("save", lambda: "Saved" in self.text("status"))

    def rows(self) -> list[dict]:
        return [json.loads(line) for line in self.out.read_text().splitlines()] if self.out.exists() else []

    def screenshot(self, name: str) -> None:
        folder = os.environ.get("LMRL_SCREENSHOTS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(Path(folder, name)))

    def check_private(self) -> None:
        """No API list (footer, info route), no analytics, nothing fetched from another host, no
        server path on the page."""
        footer = self.driver.find_element(By.TAG_NAME, "footer").get_attribute("textContent")
        assert "API" not in footer and "Built with Gradio" in footer
        info = json.loads(urllib.request.urlopen(self.app.local_url + "gradio_api/info").read())
        assert info == {"named_endpoints": {}, "unnamed_endpoints": {}}
        assert json.loads(urllib.request.urlopen(self.app.local_url + "config").read())["analytics_enabled"] is False
        fetched = self.driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert fetched and all(url.startswith(self.app.local_url) for url in fetched), fetched
        assert "/srv/" not in self.driver.page_source


def saved_conversation(row: dict) -> list[tuple[str, str]]:
    """The row's messages as the page shows them (the system prompt is the agent's, not shown)."""
    return [(m["role"], m["content"] or EMPTY_REPLY) for m in row["messages"] if m["role"] != "system"]


def seller(*replies) -> Player:
    return Player(Scripted(*replies), get_task("negotiation"), {}, SECRET_PATH, "chai")


def test_a_deal_shows_its_rules_outcome_and_score_and_saves_the_conversation_shown(page):
    page = page(seller("I can do $230."))  # seed 3: a Nintendo Switch listed at $260, a budget of $235
    briefing = page.text("briefing")
    assert "A deal closes only when" in briefing and "-0.50" in briefing and "Would you take $155?" in briefing
    assert "chai" in page.text("header") and not page.enabled("save")
    page.check_private()
    page.screenshot("play-first-load.png")
    page.say("hello")
    assert "No price in your line" in page.text("status") and page.conversation() == []
    page.say("I'd pay $300.")
    assert "above your budget of $235" in page.text("status") and page.conversation() == []
    page.say("Would you take $150?")
    assert page.conversation() == [("user", "Would you take $150?"), ("assistant", "I can do $230.")]
    page.screenshot("play-mid-episode.png")
    page.say("deal")
    assert 'You wrote "deal". Sold at $230 (listed at $260). The seller scores 0.88.' in page.outcome()
    assert not page.enabled("send") and not page.enabled("end") and page.enabled("save")
    page.rate(4)
    page.save()
    assert "Episode over (saved)" in page.outcome() and not page.enabled("save")
    page.screenshot("play-finished.png")
    [row] = page.rows()
    assert saved_conversation(row) == page.conversation()
    assert row["rating"] == 4 and row["agent"] == SECRET_PATH and validate_row(row).total_reward == pytest.approx(230 / 260)
    page.press("new", lambda: page.conversation() == [] and page.enabled("send"))  # saved: no question asked
    assert not page.visible("confirm-save")
    page.check_private()


def test_a_seller_price_below_the_offer_waits_for_the_buyer(page):
    page = page(seller("Ok, $15 then."))
    page.say("Would you take $150?")
    assert page.outcome() == "" and page.enabled("send")  # a price, not a sale
    page.say("deal")
    assert "Sold at $15 " in page.outcome()  # once the buyer accepts it
    page.save()
    [row] = page.rows()
    assert saved_conversation(row) == page.conversation() and row["sale_price"] == 15
    page.check_private()


def test_a_walk_away_is_saved_with_its_cost(page):
    page = page(seller("The price is firm at $260."))
    page.say("$100?")
    page.say("No deal, bye.")
    assert 'You wrote "No deal, bye."' in page.outcome() and "The seller scores -0.50" in page.outcome()
    page.save()
    [row] = page.rows()
    assert saved_conversation(row) == page.conversation() == [("user", "$100?"),
                                                              ("assistant", "The price is firm at $260.")]
    assert row["sale_price"] is None and validate_row(row).total_reward == -0.5
    page.check_private()


def test_an_episode_ended_early_is_confirmed_before_a_new_one_and_saved_unfinished(page):
    page = page(seller("I can do $250."))
    page.press("end", lambda: page.outcome() != "")  # before the agent replied: nothing to save, and it says so
    assert "nothing to save" in page.outcome() and "New episode" in page.text("status") and not page.enabled("save")
    page.press("new", lambda: page.outcome() == "" and page.enabled("send"))  # nothing to lose: no question
    page.say("$120")
    page.press("end", lambda: page.outcome() != "")
    assert "before its outcome" in page.outcome() and "done" not in page.outcome()
    assert not page.enabled("send") and page.enabled("save")
    page.press("new", lambda: page.visible("confirm-save"))  # not saved: the page asks
    assert "not saved" in page.text("confirm-text") and page.rows() == []
    page.press("confirm-back", lambda: not page.visible("confirm-save"))
    assert page.conversation() == [("user", "$120"), ("assistant", "I can do $250.")]
    page.save()
    [row] = page.rows()
    assert saved_conversation(row) == page.conversation() and row["done"] is False
    page.check_private()


def test_a_free_chat_ends_with_slash_end_which_is_never_sent_or_saved(page):
    policy = Scripted("Hello! How can I help?")
    page = page(Player(policy, None, {}, SECRET_PATH, "smollm2"))
    assert "Type /end when you are done" in page.text("briefing") and "smollm2" in page.text("header")
    page.say("Hi there")
    page.say("/quit")
    assert "/quit is not a command here: type /end" in page.text("status")
    page.say("/end")
    assert "Chat ended." in page.outcome() and not page.enabled("send")
    page.save()
    [row] = page.rows()
    assert saved_conversation(row) == page.conversation() == [("user", "Hi there"),
                                                              ("assistant", "Hello! How can I help?")]
    assert row["done"] is True and all("/end" not in m["content"] for m in row["messages"])
    assert all("/end" not in m["content"] for conversation in policy.seen for m in conversation)
    page.check_private()


def test_clearing_the_conversation_starts_a_new_episode_once_the_old_one_is_saved_or_given_up(page):
    page = page(seller("I can do $250.", "I can do $240.", "I can do $230.", "I can do $250."))
    first = page.text("briefing")
    page.say("$100")
    page.clear_chat(lambda: page.visible("confirm-save"))  # not saved: the page asks, the chat stays
    assert "starts a new episode" in page.text("status")
    assert page.conversation() == [("user", "$100"), ("assistant", "I can do $250.")]
    page.press("confirm-back", lambda: not page.visible("confirm-save"))
    page.clear_chat(lambda: page.visible("confirm-discard"))
    page.press("confirm-discard", lambda: page.conversation() == [] and page.text("briefing") != first)
    assert "not saved" in page.text("status") and page.rows() == []
    page.say("$120")
    page.say("$130")
    shown = page.conversation()
    page.clear_chat(lambda: page.visible("confirm-save"))
    page.press("confirm-save", lambda: page.conversation() == [])
    [row] = page.rows()  # only the episode saved on the way out, as the page showed it
    assert saved_conversation(row) == shown and row["done"] is False
    page.say("$100")
    page.press("end", lambda: page.outcome() != "")
    page.save()
    page.clear_chat(lambda: "Conversation cleared" in page.text("status"))  # saved: a new episode at once
    assert page.conversation() == [] and len(page.rows()) == 2
    page.check_private()


def test_with_auth_people_log_in_before_they_play(page):
    page = page(seller("I can do $230."), auth=("me", "secret"))
    with pytest.raises(urllib.error.HTTPError):  # the page's data needs the login
        urllib.request.urlopen(page.app.local_url + "config")

    def log_in(password: str) -> None:
        page.wait(lambda: page.driver.find_elements(By.CSS_SELECTOR, "input[type='password']"))
        for selector, text in (("input[data-testid='textbox']", "me"), ("input[type='password']", password)):
            field = page.driver.find_element(By.CSS_SELECTOR, selector)
            field.clear()
            field.send_keys(text)
        page.driver.find_element(By.XPATH, "//button[normalize-space()='Login']").click()

    log_in("guess")
    page.wait(lambda: "Incorrect" in page.driver.find_element(By.TAG_NAME, "body").text)
    assert not page.driver.find_elements(By.ID, "briefing")
    log_in("secret")
    page.wait(lambda: page.driver.find_elements(By.ID, "briefing") and "You are the buyer" in page.text("briefing"))
    page.say("Would you take $150?")
    assert page.conversation()[-1] == ("assistant", "I can do $230.")
