"""The committed sample configuration is what the registered options generate."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATOR_CONF = ROOT / "etc" / "godwit" / "godwit-config-generator.conf"
SAMPLE = ROOT / "etc" / "godwit" / "godwit.conf.sample"


def test_config_sample_is_up_to_date(tmp_path):
    generator = pathlib.Path(sys.executable).parent / "oslo-config-generator"
    assert generator.exists(), f"{generator} is missing; install the project with pip -e ."
    out = tmp_path / "godwit.conf.sample"
    proc = subprocess.run(
        [str(generator), "--config-file", str(GENERATOR_CONF), "--output-file", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, f"oslo-config-generator failed:\n{proc.stderr}"
    assert out.read_text() == SAMPLE.read_text(), (
        "etc/godwit/godwit.conf.sample is out of date with the registered options; "
        "run `make genconfig` and commit the result")


def test_config_sample_documents_godwit_options():
    text = SAMPLE.read_text()
    for header in ("[DEFAULT]", "[database]", "[api]", "[compute]", "[fake]"):
        assert header in text
    assert "#state_path = /var/lib/godwit" in text
    assert "#host = <hostname>" in text  # no build machine's name leaks into the sample
