"""The prompt for the person presenting: what they can fix, and one "not verified" for every refusal, so
the kiosk screen never says which check fired; production refuses a window that would."""

import pytest

from edge_fas.pipeline import decision as D
from edge_fas.pipeline.guidance import NOT_VERIFIED, OUT_OF_SERVICE, PLEASE_WAIT, VERIFIED, prompt

SECRET_CODES = [D.FLAT_FACE, D.NO_FACIAL_RELIEF, D.FACE_DARK_IN_IR, D.NO_PUPILS_IN_IR, D.NO_NOSE_IN_DEPTH,
                D.UNCERTAIN, D.ATTACK_SCORE, D.REPEATED_FRAME, D.PHYSICS_UNMEASURED]


@pytest.mark.parametrize("code", SECRET_CODES)
def test_every_refusal_reads_the_same_whichever_check_fired(code):
    detail = D.reason(code, "depth relief 2.1 mm < 12 mm: a plane (print or screen)")
    for verdict in ("attack", "unknown"):
        assert prompt(verdict, [detail]) == NOT_VERIFIED
    # an attack stays "not verified" even when the person could also fix something
    assert prompt("attack", [detail, D.reason(D.TOO_FAR, "1.8 m > 1.5 m")]) == NOT_VERIFIED


@pytest.mark.parametrize("code,text", [(D.NO_FACE, "Look at the camera"), (D.TOO_NEAR, "Step back"),
                                       (D.TOO_FAR, "Step closer"), (D.FACE_TURNED, "Face the camera"),
                                       (D.WARMING_UP, "Hold still")])
def test_what_the_person_can_fix_is_asked_of_them(code, text):
    assert prompt("unknown", [D.reason(code, "detail")]) == text
    # the fix is asked for even beside a weaker finding, which stays unnamed
    assert prompt("unknown", [D.reason(code), D.reason(D.NO_PUPILS_IN_IR, "0.01 < 0.03")]) == text


def test_faults_of_the_machine_are_out_of_service_and_the_rest_waits():
    assert prompt("unknown", [D.reason(D.CAMERA_STALLED, "no frame for 2 s"), D.reason(D.NO_FACE)]) == OUT_OF_SERVICE
    assert prompt("unknown", [D.reason(D.RUNTIME_ERROR, "CUDA lost")]) == OUT_OF_SERVICE
    assert prompt("unknown", [D.reason(D.STALE_FRAME, "612 ms")]) == PLEASE_WAIT
    assert prompt(None) == PLEASE_WAIT and prompt("live", ["window 5/5 live"]) == VERIFIED
    assert prompt("unknown", ["something new"]) == NOT_VERIFIED  # an unlisted reason is never a hint


def test_production_refuses_a_window_that_shows_the_reasons(tmp_path):
    from edge_fas.config import load_config
    from edge_fas.deployment import check_start
    from edge_fas.errors import ConfigError
    from tests.test_deployment_safety import _fake_artifact

    config = load_config(overrides={"deployment.mode": "production", "gui.details": "show"})
    with pytest.raises(ConfigError, match="gui.details: show.*tells an attacker what to adjust"):
        check_start(config, "realsense", _fake_artifact())


def test_every_verdicts_json_carries_the_prompt_beside_the_reasons():
    from edge_fas.types import Verdict

    attack = Verdict("attack", score=0.9, threshold=0.5, reasons=[D.reason(D.FLAT_FACE, "relief 2.1 mm")]).to_dict()
    assert attack["prompt"] == NOT_VERIFIED and attack["reasons"] == ["flat_face: relief 2.1 mm"]
    far = Verdict("unknown", reasons=[D.reason(D.TOO_FAR, "1.84 m > 1.5 m")]).to_dict()
    assert far["prompt"] == "Step closer"
    assert Verdict("live", score=0.01, threshold=0.5).to_dict()["prompt"] == VERIFIED


def test_a_site_words_the_prompts_in_its_language_and_a_typo_is_refused(tmp_path):
    from edge_fas.config import load_config
    from edge_fas.errors import ConfigError
    from edge_fas.pipeline.guidance import PROMPTS

    site = tmp_path / "site.yaml"
    site.write_text("gui:\n  prompts:\n    Step closer: Bitte näher treten\n    Not verified: Nicht bestätigt\n",
                    encoding="utf-8")
    assert load_config(site).gui.prompts == {"Step closer": "Bitte näher treten", "Not verified": "Nicht bestätigt"}
    assert "Face the camera" in PROMPTS and "Hold still" in PROMPTS and len(PROMPTS) == len(set(PROMPTS))
    site.write_text("gui:\n  prompts:\n    Step closr: Bitte näher treten\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'gui.prompts': \['Step closr'\] are not prompts.*Step closer"):
        load_config(site)
    site.write_text("gui:\n  prompts:\n    Step closer: ''\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="need a text to show"):
        load_config(site)
    site.write_text("gui:\n  prompts: [Step closer]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="gui.prompts"):
        load_config(site)


def test_a_turned_head_refused_for_an_unnamed_reason_is_asked_to_face_the_camera():
    from edge_fas.pipeline.pose import HeadPose

    nose = [D.reason(D.NO_NOSE_IN_DEPTH, "3.1 mm < 6 mm")]
    assert prompt("unknown", nose, HeadPose(24.0, 3.0, True)) == "Face the camera"
    assert prompt("unknown", nose, HeadPose(-2.0, -22.0, True)) == "Face the camera"
    assert prompt("unknown", nose, HeadPose(12.0, 8.0, True)) == NOT_VERIFIED  # facing it: nothing to ask
    assert prompt("unknown", nose) == NOT_VERIFIED  # no pose measured
    assert prompt("attack", [D.reason(D.FLAT_FACE, "2 mm")], HeadPose(28.0, 0.0, True)) == NOT_VERIFIED
    # the JSON carries the same prompt the kiosk shows
    from edge_fas.types import Verdict
    assert Verdict("unknown", reasons=nose, pose=HeadPose(24.0, 3.0, True)).to_dict()["prompt"] == "Face the camera"
