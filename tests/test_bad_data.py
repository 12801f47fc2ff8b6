"""Nothing silent, nothing lost: each bad input a user can hand lmrl's data readers is an error that names
the file, the line and the field and says what to do; no number that is not one reaches a loss; a
command never writes over a file it reads, and a failed one leaves no half file."""

import gzip
import json
import os
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from lmrl.cli import main
from lmrl.data import load_episodes, prepare_dataset
from lmrl.data.outputs import atomic_output, check_outputs
from lmrl.data.schema import Episode, Turn
from lmrl.data.tokenization import text_budget, tokenize_episode
from lmrl.tasks import convert_corpus

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real_samples"  # beside the repository, never copied into it
FIXTURES = ROOT / "tests" / "fixtures"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real corpus samples not found at {REAL}")

USER = '{"role": "user", "content": "Pick a door:"}'
GOOD = '{"messages": [' + USER + ', {"role": "assistant", "content": " red", "reward": 1.0}]}'


def reply(reward: str) -> str:
    """A JSONL line whose reply's reward is the JSON text `reward`."""
    return '{"messages": [' + USER + ', {"role": "assistant", "content": " red", "reward": ' + reward + '}]}'


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def train(tmp_path: Path, dataset: str, capsys) -> tuple[int, str]:
    """`lmrl train` on the doors recipe with `dataset`, one step: (exit code, stderr)."""
    code = main(["train", str(ROOT / "recipes" / "doors_ilql.yaml"), "--dataset", dataset, "--max_steps", "1",
                 "--output_dir", str(tmp_path / "run"), "--report_to", "none"])
    return code, capsys.readouterr().err


# -- numbers that are not numbers --------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_a_reply_reward_that_is_not_a_finite_number_names_file_line_and_field(tokenizer, tmp_path, token):
    path = write(tmp_path / "episodes.jsonl", GOOD + "\n" + reply(token) + "\n")
    with pytest.raises(ValueError, match=rf"episodes.jsonl: line 2: field 'messages\[1\].reward' is {token}"):
        prepare_dataset(path, tokenizer)


def test_a_nan_row_reward_stops_lmrl_train_naming_the_line(tmp_path, capsys):
    path = write(tmp_path / "episodes.jsonl", GOOD + "\n" + GOOD[:-1] + ', "reward": NaN}\n')
    code, err = train(tmp_path, path, capsys)
    assert code == 2
    assert "episodes.jsonl: line 2: field 'reward' is NaN, which JSON does not have. Write a finite number." in err
    assert not (tmp_path / "run").exists()


def test_a_key_given_twice_is_an_error_naming_the_key_wherever_it_stands(tokenizer, tmp_path):
    path = write(tmp_path / "episodes.jsonl", GOOD[:-1] + ', "reward": 1.0, "reward": NaN}\n')
    with pytest.raises(ValueError, match="line 1: field 'reward' is given twice in one object"):
        prepare_dataset(path, tokenizer)
    path = write(tmp_path / "episodes.jsonl", reply('1.0, "reward": 0.0') + "\n")
    with pytest.raises(ValueError, match=r"line 1: field 'messages\[1\].reward' is given twice"):
        prepare_dataset(path, tokenizer)
    path = write(tmp_path / "episodes.jsonl", GOOD[:-1] + ', "meta": {"id": 1, "id": 2}}\n')
    with pytest.raises(ValueError, match="line 1: field 'meta.id' is given twice"):
        load_episodes(path)


def test_nan_in_a_json_array_file_names_the_line_of_its_row(tokenizer, tmp_path):
    path = write(tmp_path / "episodes.json", "[\n" + GOOD + ",\n" + reply("NaN") + "\n]\n")
    with pytest.raises(ValueError, match=r"episodes.json: line 3 \(row 1\): field 'messages\[1\].reward' is NaN"):
        prepare_dataset(path, tokenizer)


def test_nan_deep_in_a_field_lmrl_does_not_train_on_is_still_an_error(tmp_path):
    path = write(tmp_path / "episodes.jsonl", GOOD[:-1] + ', "context": {"kb": [{"price": 1e400}]}}\n')
    with pytest.raises(ValueError, match=r"line 1: field 'context.kb\[0\].price' is 1e400, too large for a number"):
        load_episodes(path)
    rows = [json.loads(GOOD) | {"context": {"kb": [{"price": float("nan")}]}}]
    with pytest.raises(ValueError, match=r"row 0: field 'context.kb\[0\].price' is nan, not a finite number"):
        load_episodes(rows)


def test_a_csv_reward_of_nan_or_text_names_its_csv_line(tokenizer, tmp_path):
    path = write(tmp_path / "episodes.csv", "prompt,completion,reward\nPick a door:, red,1.0\nPick a door:, blue,nan\n")
    with pytest.raises(ValueError, match=r"episodes.csv: line 3: field 'reward' is 'nan', not a finite number"):
        prepare_dataset(path, tokenizer)
    path = write(tmp_path / "episodes.csv", "prompt,completion,reward\nPick a door:, red,1.0\nPick a door:, blue,abc\n")
    with pytest.raises(ValueError, match=r"episodes.csv: line 3: field 'reward' is 'abc', not a number"):
        prepare_dataset(path, tokenizer)


def test_csv_cells_are_read_as_written_and_numbers_where_lmrl_reads_them(tokenizer, tmp_path):
    """pandas would read the prompt "NA" as a missing value; here it is the text NA, on its line."""
    path = write(tmp_path / "episodes.csv", 'prompt,completion,reward,note\nNA, red,1,007\n"Pick,\na door:", blue,0.5,\n')
    data = load_episodes(path)
    assert data["prompt"] == ["NA", "Pick,\na door:"] and data["reward"] == [1.0, 0.5] and data["note"] == ["007", ""]
    assert prepare_dataset(path, tokenizer)["returns"] == [1.0, 0.5]
    path = write(tmp_path / "episodes.csv", "prompt,completion,reward\nPick a door:, red,1\nPick a door:, blue\n")
    with pytest.raises(ValueError, match="episodes.csv: line 3 has 2 cells, but the header"):
        load_episodes(path)


# -- null and missing rewards ------------------------------------------------------------------------------


def test_a_missing_reward_is_zero_but_a_null_outcome_on_a_labelled_row_is_an_error(tokenizer, tmp_path):
    two_replies = ('{"messages": [%s, {"role": "assistant", "content": " red", "reward": %s}, %s, '
                   '{"role": "assistant", "content": " blue"%s}]%s}')
    missing = two_replies % (USER, "null", USER, "", "")  # null before the end: no reward, as Arrow writes it
    assert prepare_dataset([json.loads(missing)], tokenizer)["returns"] == [0.0]
    path = write(tmp_path / "episodes.jsonl", missing + "\n")
    assert prepare_dataset(path, tokenizer)["returns"] == [0.0]
    last_null = two_replies % (USER, "1.0", USER, ', "reward": null', "")
    path = write(tmp_path / "episodes.jsonl", missing + "\n" + last_null + "\n")
    with pytest.raises(ValueError, match=r"line 2: field 'messages\[3\].reward' is null on a labelled row, so the "
                                         "episode's outcome is unknown.*drop the key.*\"labeled\": false"):
        prepare_dataset(path, tokenizer)
    path = write(tmp_path / "episodes.jsonl", GOOD[:-1] + ', "reward": null}\n')
    with pytest.raises(ValueError, match="line 1: field 'reward' is null on a labelled row"):
        prepare_dataset(path, tokenizer)
    unlabeled = last_null.replace(' "reward": 1.0', ' "reward": null')[:-1] + ', "labeled": false}'
    path = write(tmp_path / "episodes.jsonl", unlabeled + "\n")
    assert prepare_dataset(path, tokenizer, unlabeled_reward=-0.5)["returns"] == [-1.0]


def test_an_empty_csv_reward_is_an_error_unless_the_row_is_marked_unlabeled(tokenizer, tmp_path):
    path = write(tmp_path / "episodes.csv", "prompt,completion,reward\nPick a door:, red,\n")
    with pytest.raises(ValueError, match="episodes.csv: line 2: field 'reward' is empty on a labelled row"):
        prepare_dataset(path, tokenizer)
    path = write(tmp_path / "episodes.csv", "prompt,completion,reward,labeled\nPick a door:, red,,false\n"
                                            "Pick a door:, blue,1,\n")
    assert prepare_dataset(path, tokenizer, unlabeled_reward=-1.0)["returns"] == [-1.0, 1.0]


# -- files Arrow or Python would fail on without naming the line --------------------------------------------


def test_a_row_nested_200_levels_deep_names_its_line_and_field(tokenizer, tmp_path):
    path = write(tmp_path / "episodes.jsonl", GOOD + "\n" + GOOD[:-1] + ', "x": ' + "[" * 200 + "1" + "]" * 200 + "}\n")
    with pytest.raises(ValueError, match=r"episodes.jsonl: line 2: field 'x(\[0\])+' is nested more than 32 levels"):
        prepare_dataset(path, tokenizer)
    path = write(tmp_path / "episodes.jsonl", GOOD[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(ValueError, match="line 1: the value nests objects and lists too deeply"):
        load_episodes(path)
    deep: list = [1]
    for _ in range(60):
        deep = [deep]
    with pytest.raises(ValueError, match=r"row 0: field 'x(\[0\])+' is nested more than 32 levels"):
        load_episodes([json.loads(GOOD) | {"x": deep}])


def test_a_line_that_is_a_json_array_is_named_and_the_json_format_suggested(tokenizer, tmp_path):
    path = write(tmp_path / "episodes.jsonl", GOOD + "\n[" + GOOD + "]\n")
    with pytest.raises(ValueError, match=r"episodes.jsonl: line 2 is a JSON array, not an object.*ends in .json"):
        prepare_dataset(path, tokenizer)


def test_bytes_that_are_not_utf8_name_the_line_and_column(tokenizer, tmp_path):
    path = tmp_path / "episodes.jsonl"
    path.write_bytes((GOOD + "\n").encode() + reply('"caf\xe9"').encode("latin-1") + b"\n")
    with pytest.raises(ValueError, match=r"episodes.jsonl: line 2 is not UTF-8 text \(byte 0xe9 at column \d+"):
        prepare_dataset(str(path), tokenizer)


def test_blank_lines_do_not_shift_the_line_a_bad_row_is_blamed_on(tokenizer, tmp_path):
    path = write(tmp_path / "episodes.jsonl", "\n\n" + GOOD + "\n\n   \n" + '{"messages": 5}\n')
    with pytest.raises(ValueError, match="episodes.jsonl: line 6: field 'messages' must be a list of messages"):
        prepare_dataset(path, tokenizer)
    path = write(tmp_path / "episodes.jsonl", "\n" + GOOD + "\n\x0c\n")  # a form feed is not JSON whitespace
    with pytest.raises(ValueError, match="line 3 is not valid JSON"):
        load_episodes(path)


def test_errors_found_while_tokenizing_a_file_name_its_line(tokenizer, tmp_path):
    long = '{"messages": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": " red"}]}' % (
        "red door blue door " * 20)
    path = write(tmp_path / "episodes.jsonl", GOOD + "\n\n" + long + "\n")
    with pytest.raises(ValueError, match=r"episodes.jsonl: line 3: the episode is \d+ tokens long, longer than"):
        prepare_dataset(path, tokenizer, max_length=8, truncation_mode="error")


def test_a_folder_written_by_save_to_disk_is_loaded_as_the_dataset(tmp_path, capsys):
    rows = [json.loads(GOOD)] * 4
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    saved = load_episodes(str(tmp_path / "saved"))
    assert len(saved) == 4 and saved[0]["messages"][1] == {"role": "assistant", "content": " red", "reward": 1.0}
    DatasetDict(train=Dataset.from_list(rows)).save_to_disk(str(tmp_path / "splits"))
    assert len(load_episodes(str(tmp_path / "splits"))) == 4
    with pytest.raises(ValueError, match=r"splits: the saved dataset has no split 'test'; it has \['train'\]"):
        load_episodes(str(tmp_path / "splits"), split="test")
    code, _ = train(tmp_path, str(tmp_path / "saved"), capsys)
    assert code == 0


def test_a_row_far_longer_than_max_length_is_tokenized_only_as_far_as_max_length_needs(tokenizer):
    """The 50 MB-line case in small: the tokenizer never sees the whole message, yet the kept tokens are
    those of the whole message's end."""
    class Spy:
        def __init__(self, wrapped):
            self.wrapped, self.longest = wrapped, 0

        def __call__(self, text, **kwargs):
            self.longest = max(self.longest, len(text))
            return self.wrapped(text, **kwargs)

        def __getattr__(self, name):
            return getattr(self.wrapped, name)

    spy = Spy(tokenizer)
    budget = text_budget(tokenizer, 8)
    text = "red door blue door " * (3 * budget // 19)
    episode = Episode([Turn("user", text), Turn("assistant", " red", 1.0)])
    short = tokenize_episode(spy, episode, max_length=8)
    assert spy.longest <= budget < len(text)
    assert short.truncated and short.input_ids == tokenize_episode(tokenizer, episode).input_ids[-8:]
    assert short.rewards[-1] == 1.0
    with pytest.raises(ValueError, match=rf"row 0: message 0 is {len(text)} characters long, more than max_length=8"):
        prepare_dataset([{"messages": episode.messages(rewards=True)}], tokenizer, max_length=8,
                        truncation_mode="error")


# -- lmrl convert: inputs kept, outputs whole ----------------------------------------------------------------


def airdialogue_pair(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "x_data.json"
    kb = tmp_path / "x_kb.json"
    data.write_text((FIXTURES / "airdialogue" / "data.json").read_text())
    kb.write_text((FIXTURES / "airdialogue" / "kb.json").read_text())
    return data, kb


def test_convert_refuses_an_out_path_that_is_the_kb_file_it_reads(tmp_path, capsys):
    data, kb = airdialogue_pair(tmp_path)
    before = kb.read_bytes()
    assert main(["convert", "flight_booking", str(data), "--out", str(kb)]) == 2
    assert f"--out ({kb}) is {kb}, which this command reads: writing it would destroy its input" in (
        capsys.readouterr().err)
    assert kb.read_bytes() == before
    os.symlink(kb, tmp_path / "link.jsonl")  # the same file under another name
    with pytest.raises(ValueError, match="link.jsonl.* which this command reads"):
        convert_corpus("flight_booking", data, tmp_path / "link.jsonl")
    assert kb.read_bytes() == before and (tmp_path / "link.jsonl").is_symlink()


def test_convert_refuses_a_rejected_path_that_is_the_corpus_or_the_out_file(tmp_path, capsys, monkeypatch):
    data, _ = airdialogue_pair(tmp_path)
    before = data.read_bytes()
    assert main(["convert", "flight_booking", str(data), "--out", str(tmp_path / "rows.jsonl"), "--on-error", "skip",
                 "--rejected", str(data)]) == 2
    assert f"--rejected ({data}) is the corpus file ({data}), which this command reads" in capsys.readouterr().err
    assert data.read_bytes() == before
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "flight_booking", str(data), "--out", "rows.jsonl", "--on-error", "skip",
                 "--rejected", "./sub/../rows.jsonl"]) == 2
    assert "--out (rows.jsonl) and --rejected (./sub/../rows.jsonl) are the same file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_data.json", "x_kb.json"]


def test_a_failed_conversion_leaves_the_existing_output_as_it_was_and_no_partial_file(tmp_path):
    data, kb = airdialogue_pair(tmp_path)
    out = tmp_path / "rows.jsonl"
    out.write_text("earlier rows\n")
    data.write_text(data.read_text() + '{"intent": \n')
    kb.write_text(kb.read_text() + kb.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="x_data.json: line 5"):
        convert_corpus("flight_booking", data, out)
    assert out.read_text() == "earlier rows\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl", "x_data.json", "x_kb.json"]


@needs_real
def test_a_truncated_gz_corpus_is_named_and_nothing_is_written(tmp_path, capsys):
    data = (REAL / "airdialogue_hf_dev_data.jsonl.gz").read_bytes()
    source = tmp_path / "dev_data.jsonl.gz"
    source.write_bytes(data[: len(data) // 2])
    (tmp_path / "dev_kb.jsonl.gz").write_bytes((REAL / "airdialogue_hf_dev_kb.jsonl.gz").read_bytes())
    out = tmp_path / "rows.jsonl"
    assert main(["convert", "flight_booking", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{source} ends before its gzip data does: the file is truncated" in err and "Download it again" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["dev_data.jsonl.gz", "dev_kb.jsonl.gz"]
    plain = tmp_path / "plain.json.gz"
    plain.write_bytes(gzip.decompress(data))
    with pytest.raises(ValueError, match="plain.json.gz is not gzip data although its name ends in .gz"):
        convert_corpus("flight_booking", plain, out, kb_path=str(tmp_path / "dev_kb.jsonl.gz"))


def test_nan_in_a_corpus_is_refused_at_its_line(tmp_path):
    dialogues = json.loads((FIXTURES / "craigslist_bargain.json").read_text())
    source = tmp_path / "cb.json"
    source.write_text(json.dumps(dialogues, indent=1).replace('"Price": ', '"Price": NaN, "Was": ', 1))
    with pytest.raises(ValueError, match=r"cb.json: line 2 \(dialogue 0\): field 'scenario.kbs\[\d\].item.Price' is NaN"):
        convert_corpus("negotiation", source, tmp_path / "rows.jsonl")
    assert not (tmp_path / "rows.jsonl").exists()
    data, _ = airdialogue_pair(tmp_path)
    lines = data.read_text().splitlines()
    lines[1] = lines[1].replace('"dialogue"', '"score": Infinity, "dialogue"', 1)
    data.write_text("\n".join(lines) + "\n")
    summary = convert_corpus("flight_booking", data, tmp_path / "rows.jsonl", on_error="skip")
    assert summary["rows"] == 3 and summary["rejected_by_reason"] == {"field 'score' is not a finite number": 1}


# -- the outputs helper ----------------------------------------------------------------------------------------


def test_check_outputs_sees_one_file_under_every_name(tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text("{}\n")
    os.link(source, tmp_path / "hard.jsonl")
    for name in ("rows.jsonl", "./rows.jsonl", "sub/../rows.jsonl", "hard.jsonl"):
        with pytest.raises(ValueError, match=f"--out \\({tmp_path / name}\\) is {source}, which this command reads"):
            check_outputs(inputs=[source], outputs={"--out": tmp_path / name})
    check_outputs(inputs=[source, None], outputs={"--out": tmp_path / "new.jsonl", "--rejected": None})
    with pytest.raises(ValueError, match="new.jsonl\\) and --b .* are the same file"):
        check_outputs(outputs={"--a": tmp_path / "new.jsonl", "--b": tmp_path / "x" / ".." / "new.jsonl"})


def test_atomic_output_replaces_the_file_only_when_the_block_succeeds(tmp_path):
    path = tmp_path / "out" / "rows.jsonl"
    with atomic_output(path) as partial:
        partial.write_text("first\n")
        assert not path.exists() and partial.parent == path.parent
    assert path.read_text() == "first\n"
    with pytest.raises(RuntimeError), atomic_output(path) as partial:
        partial.write_text("half")
        raise RuntimeError("the conversion failed")
    assert path.read_text() == "first\n" and os.listdir(path.parent) == ["rows.jsonl"]
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_output(path):
        pass
    with atomic_output(path, missing_ok=True):  # no output this time: the old one would mislead
        pass
    assert not path.exists()
