"""`lmrl convert`: real corpus samples, streaming (flat memory), --on-error skip and its side file,
Parquet output, and the incremental JSON-array reader."""

import gzip
import json
import tracemalloc
from pathlib import Path

import pytest

from lmrl.cli import main
from lmrl.data import load_episodes, validate_row
from lmrl.data.corpus import iter_json_array
from lmrl.tasks import convert_corpus

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real_samples"  # beside the repository, never copied into it
FIXTURES = ROOT / "tests" / "fixtures"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real corpus samples not found at {REAL}")


def lines(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_lines(path: Path, objects: list) -> Path:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objects))
    return path


@needs_real
@pytest.mark.parametrize("split", ["train", "dev"])
def test_real_airdialogue_lines_get_the_datasets_own_correct_sample_as_reward(tmp_path, split, capsys):
    source = REAL / f"airdialogue_hf_{split}_data.jsonl.gz"
    out = tmp_path / "rows.jsonl"
    assert main(["convert", "flight_booking", str(source), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    truth = [line["correct_sample"] for line in lines(source)]
    assert len(rows) == len(truth) == json.loads(capsys.readouterr().out)["rows"]
    assert [row["messages"][-1]["reward"] for row in rows] == [float(label) for label in truth]
    kbs = lines(REAL / f"airdialogue_hf_{split}_kb.jsonl.gz")
    for i, (row, data, kb) in enumerate(zip(rows, lines(source), kbs)):
        validate_row(row, i)
        assert row["context"]["kb"] == kb["kb"] and len(row["context"]["kb"]) == 30
        assert row["intent"] == data["intent"] and row["action"]["name"] == data["action"]["name"]
        assert row["expected_action"]["flights"] == data["expected_action"]["flight"]
        assert row["messages"][-1]["content"].endswith(f" for {data['action']['name'].strip()}.")


@needs_real
def test_real_airdialogue_name_case_counts_under_the_official_rule_only_as_airdialogue_does(tmp_path):
    """A line whose action names the customer 'Edward hall' (intent: 'Edward Hall') is correct in the
    dataset; one whose name is misspelled is not under the official rule, but is under flight_status."""
    source = REAL / "airdialogue_hf_train_data.jsonl.gz"
    data, kb = lines(source), lines(REAL / "airdialogue_hf_train_kb.jsonl.gz")
    assert data[0]["action"]["name"] != data[0]["expected_action"]["name"] and data[0]["correct_sample"]
    data[1]["action"]["name"] = "Stephen Evens"  # a correct line, its name misspelled
    data_path = write_lines(tmp_path / "x_data.json", data)
    write_lines(tmp_path / "x_kb.json", kb)
    official = convert_corpus("flight_booking", data_path, tmp_path / "official.jsonl")
    loose = convert_corpus("flight_booking", data_path, tmp_path / "loose.jsonl", success_rule="flight_status")
    assert official["rows"] == loose["rows"] == 6
    official_rows, loose_rows = (lines(tmp_path / name) for name in ("official.jsonl", "loose.jsonl"))
    assert [r["messages"][-1]["reward"] for r in official_rows] == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    assert [r["messages"][-1]["reward"] for r in loose_rows] == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert official_rows[1]["messages"][-1]["content"] == "Final action: book flight 1006 for Stephen Evens."
    assert loose_rows[1]["messages"][-1]["content"] == "Final action: book flight 1006."


@needs_real
def test_real_craigslist_files_convert_dialogue_by_dialogue(tmp_path, capsys):
    total = 0
    for split in ("train", "validation", "test"):
        source = REAL / f"craigslist_{split}.json.gz"
        dialogues = json.loads(gzip.decompress(source.read_bytes()))
        for chunk_size in (3, 64, 1 << 20):  # elements cut anywhere by the buffer
            assert [value for _, value, _ in iter_json_array(source, chunk_size=chunk_size)] == dialogues
        out = tmp_path / f"{split}.jsonl"
        assert main(["convert", "negotiation", str(source), "--out", str(out)]) == 0
        rows = lines(out)
        for i, row in enumerate(rows):
            validate_row(row, i)
            assert row["messages"][0]["role"] == "system" and row["list_price"] > 0
        total += len(rows)
    assert total == 13  # every real dialogue has a seller turn


def test_the_json_array_reader_names_the_line_and_column_of_an_error_far_into_the_file(tmp_path):
    good = json.dumps({"uuid": "C_1", "events": []}, indent=1)
    path = tmp_path / "big.json"
    path.write_text("[\n" + ",\n".join([good] * 50) + ",\n {\"uuid\": \"C_2\", \"events\": [1,, 2]}\n]\n")
    reader = iter_json_array(path, items="dialogues", chunk_size=16)
    with pytest.raises(ValueError) as error:
        for _ in reader:
            pass
    with pytest.raises(json.JSONDecodeError) as whole:  # where json.loads of the whole file points
        json.loads(path.read_text())
    assert whole.value.lineno > 200
    assert (f"big.json: invalid JSON at line {whole.value.lineno}, column {whole.value.colno}: Expecting value"
            in str(error.value))
    for text, expected in (("{}", "got an object"), ("", "got nothing"), ("[1] 2", "Extra data"),
                           ("[1, 2", "Unterminated array"), ("[]", None)):
        path.write_text(text)
        if expected is None:
            assert list(iter_json_array(path)) == []
            continue
        with pytest.raises(ValueError, match=expected):
            list(iter_json_array(path, items="dialogues"))


def airdialogue_pair_files(tmp_path: Path, data: list, kb: list) -> Path:
    write_lines(tmp_path / "odd_kb.json", kb)
    return write_lines(tmp_path / "odd_data.json", data)


def odd_airdialogue(tmp_path: Path) -> Path:
    """The fixture's 4 lines plus odd lines (each a copy of line 1 with one fault)."""
    data, kb = lines(FIXTURES / "airdialogue" / "data.json"), lines(FIXTURES / "airdialogue" / "kb.json")
    book_without_flight = json.loads(json.dumps(data[0]))
    book_without_flight["action"]["flight"] = []
    bare_int = json.loads(json.dumps(data[0]))
    bare_int["action"]["flight"] = 1001
    empty_turn = json.loads(json.dumps(data[0]))
    empty_turn["dialogue"][3] = ""
    data = [data[0], book_without_flight, data[1], bare_int, data[2], empty_turn, '{"intent": ', data[3]]
    kb = [kb[0], kb[0], kb[1], kb[0], kb[2], kb[0], kb[0], kb[3]]
    return airdialogue_pair_files(tmp_path, data, kb)


def test_by_default_an_odd_line_stops_the_conversion_naming_file_line_and_field(tmp_path, capsys):
    source = odd_airdialogue(tmp_path)
    out = tmp_path / "rows.jsonl"
    assert main(["convert", "flight_booking", str(source), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"{source}: line 2: field 'action.flight' is empty, but the status 'book' needs a flight" in error
    assert "--on-error skip" in error
    assert not out.exists() and not list(tmp_path.glob("rows*"))  # no half-converted file is left


def test_on_error_skip_converts_the_rest_and_lists_each_rejected_line_with_its_reason(tmp_path, capsys):
    source = odd_airdialogue(tmp_path)
    out = tmp_path / "rows.jsonl"
    assert main(["convert", "flight_booking", str(source), "--out", str(out), "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    rows = lines(out)
    assert [row["action"]["name"] for row in rows] == ["Jennifer Young", "Kevin Moore", "Susan Clark", "Brian Lee"]
    assert [row["messages"][-1]["reward"] for row in rows] == [1.0, 0.0, 1.0, 0.0]
    assert summary["rows"] == 4 and summary["rejected"] == 4
    assert summary["rejected_file"] == str(tmp_path / "rows.rejected.jsonl")
    assert summary["rejected_by_reason"] == {
        "field 'action.flight' is empty, but book and change need a flight number": 1,
        "field 'action.flight' must be a list of flight numbers": 1,
        "field 'dialogue[i]' does not start with 'customer:' or 'agent:'": 1,
        "invalid JSON": 1,
    }
    rejected = lines(tmp_path / "rows.rejected.jsonl")
    assert [(r["where"], r["field"]) for r in rejected] == [
        ("line 2", "action.flight"), ("line 4", "action.flight"), ("line 6", "dialogue[3]"), ("line 7", None)]
    assert all(r["file"] == str(source) and str(source) in r["message"] for r in rejected)
    assert json.loads(rejected[0]["data_line"])["action"]["flight"] == []  # the raw line, to fix and convert again
    assert json.loads(rejected[0]["kb_line"])["kb"][0]["flight_number"] == 1000
    assert "left out 4 record(s)" in captured.err and "1  invalid JSON" in captured.err
    # a second run with nothing to reject leaves no stale side file behind
    clean = airdialogue_pair_files(tmp_path, lines(FIXTURES / "airdialogue" / "data.json"),
                                   lines(FIXTURES / "airdialogue" / "kb.json"))
    assert convert_corpus("flight_booking", clean, out, on_error="skip")["rejected"] == 0
    assert not (tmp_path / "rows.rejected.jsonl").exists()


def test_a_data_file_whose_kb_file_cannot_be_found_by_name_asks_for_kb_path(tmp_path):
    data = tmp_path / "dialogues.json"
    data.write_text((FIXTURES / "airdialogue" / "data.json").read_text())
    with pytest.raises(ValueError, match="no '_data' to replace with '_kb'.*--option kb_path=PATH"):
        convert_corpus("flight_booking", data, tmp_path / "rows.jsonl")
    summary = convert_corpus("flight_booking", data, tmp_path / "rows.jsonl",
                             kb_path=str(FIXTURES / "airdialogue" / "kb.json"))
    assert summary["rows"] == 4


def test_on_error_skip_still_stops_on_files_that_do_not_belong_together(tmp_path):
    data, kb = lines(FIXTURES / "airdialogue" / "data.json"), lines(FIXTURES / "airdialogue" / "kb.json")
    source = airdialogue_pair_files(tmp_path, data, kb[:3])
    with pytest.raises(ValueError, match="has 4 lines but .*odd_kb.json has 3"):
        convert_corpus("flight_booking", source, tmp_path / "rows.jsonl", on_error="skip")
    assert not (tmp_path / "rows.jsonl").exists()


def test_on_error_skip_leaves_out_a_malformed_craigslist_dialogue_and_names_it(tmp_path):
    dialogues = json.loads((FIXTURES / "craigslist_bargain.json").read_text())
    dialogues[1]["events"][2]["action"] = "bargain"
    dialogues.insert(0, "not a dialogue")
    source = tmp_path / "cb.json"
    source.write_text(json.dumps(dialogues, indent=2))
    with pytest.raises(ValueError, match=r"cb.json: dialogue 0: field '\[0\]' must be a dialogue object"):
        convert_corpus("negotiation", source, tmp_path / "rows.jsonl")
    summary = convert_corpus("negotiation", source, tmp_path / "rows.jsonl", on_error="skip",
                             rejected=tmp_path / "bad.jsonl")
    assert summary["rows"] == 2 and summary["rejected_by_reason"] == {
        "field '[i]' must be a dialogue object": 1, "field 'events[i].action' is an unknown action": 1}
    rejected = lines(tmp_path / "bad.jsonl")
    assert [r["where"] for r in rejected] == ["dialogue 0", "dialogue 2 (uuid C_1b2c3d4e5f60)"]
    assert json.loads(rejected[1]["dialogue"])["events"][2]["action"] == "bargain"


@pytest.mark.parametrize(("task", "source"), [
    ("flight_booking", FIXTURES / "airdialogue" / "data.json"), ("negotiation", FIXTURES / "craigslist_bargain.json")])
def test_a_parquet_out_path_writes_the_same_rows_as_jsonl(tmp_path, task, source):
    if task == "flight_booking":  # the loader finds the kb file by name: *_data -> *_kb
        kb = (FIXTURES / "airdialogue" / "kb.json").read_text()
        (tmp_path / "x_kb.json").write_text(kb)
        (tmp_path / "x_data.json").write_text(source.read_text())
        source = tmp_path / "x_data.json"
    convert_corpus(task, source, tmp_path / "rows.jsonl")
    convert_corpus(task, source, tmp_path / "rows.parquet")
    from_jsonl, from_parquet = (load_episodes(str(tmp_path / name)) for name in ("rows.jsonl", "rows.parquet"))
    assert len(from_parquet) == len(from_jsonl) > 0
    for i, (a, b) in enumerate(zip(from_jsonl, from_parquet)):
        assert validate_row(a, i).messages(rewards=True) == validate_row(b, i).messages(rewards=True)
    if task == "flight_booking":
        assert from_parquet[0]["context"]["kb"][0] == lines(FIXTURES / "airdialogue" / "kb.json")[0]["kb"][0]
        assert from_parquet[0]["action"] == {"status": "book", "flight": 1001, "name": "Jennifer Young"}


def test_conversion_memory_stays_flat_as_the_file_grows(tmp_path):
    """Python's peak allocation while converting 4x the lines stays within 1.5x (it grew 4x when every
    row was held until the end)."""
    data, kb = lines(FIXTURES / "airdialogue" / "data.json"), lines(FIXTURES / "airdialogue" / "kb.json")
    kb = [{**record, "kb": [dict(record["kb"][i % len(record["kb"])], flight_number=1000 + i) for i in range(30)]}
          for record in kb]

    def peak(copies: int) -> int:
        source = airdialogue_pair_files(tmp_path, data * copies, kb * copies)
        tracemalloc.start()
        summary = convert_corpus("flight_booking", source, tmp_path / "rows.jsonl")
        _, peak_bytes = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert summary["rows"] == 4 * copies
        return peak_bytes

    peak(5)  # imports and caches
    small, large = peak(25), peak(100)
    assert large < 1.5 * small, (small, large)
