"""List files in the official formats, and label polarity read from the source, never guessed."""

import pytest

from edge_fas.data import cefa
from edge_fas.data.images import check_label
from edge_fas.data.lists import read_list, to_attack_label
from edge_fas.data.records import DatasetError
from edge_fas.errors import EdgeFasError

C_LINE = ("CeFA/CeFA-Race/AF/AF-000/1_000_1_1_1/profile/0026.jpg CeFA/CeFA-Race/AF/AF-000/1_000_1_1_1/depth/0026.jpg "
          "CeFA/CeFA-Race/AF/AF-000/1_000_1_1_1/ir/0026.jpg 1")
C_ATTACK = C_LINE.replace("1_000_1_1_1", "1_000_3_1_2")[:-1] + "0"


def test_official_formats_crlf_no_final_newline_and_tabs(tmp_path):
    mmdg = tmp_path / "C-train.txt"
    mmdg.write_bytes(f"{C_LINE}\r\n{C_ATTACK}".encode())  # CRLF, no final newline (as the MMDG lists)
    lines = read_list(mmdg)
    assert [ln.value for ln in lines] == [1, 0] and len(lines[0].fields) == 3
    assert lines[1].fields[0].endswith("1_000_3_1_2/profile/0026.jpg") and lines[1].where.endswith("C-train.txt:2")
    padisi = tmp_path / "P-train.txt"
    padisi.write_text("zc7db0ae.npz\t1\nzb50f8f6.npz\t0\n")  # the PADISI lists: two tab-separated fields
    assert [(ln.fields, ln.value) for ln in read_list(padisi)] == [(("zc7db0ae.npz",), 1), (("zb50f8f6.npz",), 0)]


def test_bad_lines_name_file_line_and_fix(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{C_LINE}\n\nonly three fields\n")
    with pytest.raises(DatasetError, match=r"bad.txt:3: expected 4 \(color depth ir label\) or 2 \(path label\) "
                                           r"whitespace-separated fields, got 3"):
        read_list(bad)
    p_list = tmp_path / "P-train.txt"
    p_list.write_text("zc7db0ae.npz\t1\nzb50f8f6.npz 0 extra\n")
    with pytest.raises(DatasetError, match=r"P-train.txt:2: expected 2 \(path label\) whitespace-separated fields, got 3"):
        read_list(p_list, fields=(2,))
    bad.write_text("a.jpg b.jpg c.jpg 2\n")
    with pytest.raises(DatasetError, match=r"bad.txt:1: label '2' is not 0 or 1"):
        read_list(bad)
    bad.write_text("# just a comment\n\n")
    with pytest.raises(DatasetError, match="has no entries"):
        read_list(bad)
    with pytest.raises(DatasetError, match="nope.txt does not exist"):
        read_list(tmp_path / "nope.txt")
    assert issubclass(DatasetError, EdgeFasError)  # the CLI prints it as an error, not a traceback


def test_polarity_is_the_sources_and_never_guessed():
    # MMDG-Benchmark / FlexModal / PADISI npz / CASIA-SURF lists: 1 = bona fide -> ours 0
    assert [to_attack_label(v, "live=1", "x") for v in (1, 0)] == [0, 1]
    # the CASIA-FAS-Dataset re-issue: 0 = live -> ours 0
    assert [to_attack_label(v, "attack=1", "x") for v in (0, 1)] == [0, 1]
    with pytest.raises(DatasetError, match="does not guess"):
        to_attack_label(1, "unknown", "x")


def test_a_list_read_with_the_wrong_polarity_is_refused(tmp_path):
    # an MMDG list whose label 1 is a bona fide video (PAI 1 in its folder name): reading it as
    # attack=1 would invert every label; the path contradicts that and the line is refused
    lst = tmp_path / "C-test.txt"
    lst.write_text(C_LINE + "\n")
    (line,) = read_list(lst)
    check_label(to_attack_label(line.value, "live=1", line.where), cefa.path_species(line.fields[0]), line.where, "live=1")
    with pytest.raises(DatasetError, match=r"C-test.txt:1: the label reads as attack .* names a bona fide sample"):
        check_label(to_attack_label(line.value, "attack=1", line.where), cefa.path_species(line.fields[0]),
                    line.where, "attack=1")
