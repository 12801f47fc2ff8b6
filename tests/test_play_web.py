"""`lmrl play --web`: a full negotiation played through the Gradio page in a real headless browser
writes the same training row as the terminal."""

import json
import shutil

import pytest

pytest.importorskip("gradio", reason="lmrl play --web needs Gradio: pip install 'lmrl[web]'")
pytest.importorskip("selenium", reason="the browser test drives the page with Selenium: pip install selenium")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs a headless Chromium and its driver "
                                "(Debian: apt-get install chromium chromium-driver)")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from lmrl.data import validate_row  # noqa: E402
from lmrl.play import Player  # noqa: E402
from lmrl.play_web import build_app  # noqa: E402
from lmrl.tasks import get_task  # noqa: E402


class Scripted:
    def __init__(self, *replies):
        self.replies = list(replies)

    def __call__(self, conversations):
        return [self.replies.pop(0) for _ in conversations]


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def _say(driver, text: str, expect: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, "#line textarea")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "send").click()
    WebDriverWait(driver, 30).until(lambda d: expect in d.find_element(By.TAG_NAME, "body").text)


def test_a_negotiation_played_in_the_browser_is_saved_as_a_training_row(browser, tmp_path):
    out = tmp_path / "played.jsonl"
    player = Player(Scripted("I can do $230."), get_task("negotiation"), {}, "a scripted seller")
    app = build_app(player, out, seed=3)  # a Nintendo Switch listed at $260
    app.launch(server_name="127.0.0.1", prevent_thread_lock=True)
    try:
        assert app.local_url.startswith("http://127.0.0.1:")  # loopback only
        browser.get(app.local_url)
        WebDriverWait(browser, 60).until(lambda d: "For sale: Nintendo Switch" in d.find_element(By.ID, "briefing").text)
        _say(browser, "hello", "No price in your line")  # unreadable: a message, and the episode goes on
        _say(browser, "Would you take $150?", "I can do $230.")
        _say(browser, "deal", "Sold at $230 (listed at $260)")
        four = browser.find_element(By.CSS_SELECTOR, "#rating input[value='4']")
        browser.execute_script("arguments[0].click();", four)
        browser.find_element(By.ID, "save").click()
        WebDriverWait(browser, 30).until(lambda d: "Saved episode 1" in d.find_element(By.ID, "status").text)
    finally:
        app.close()
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["source"] == "human" and row["task"] == "negotiation" and row["rating"] == 4
    assert [m["content"] for m in row["messages"] if m["role"] == "user"] == ["Would you take $150?"]
    assert validate_row(row).total_reward == pytest.approx(230 / 260)
