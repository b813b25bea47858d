"""The Flower config files `fl-sim cluster` writes (tomli_w) read back as what was meant,
also for paths and overrides with quotes, backslashes and spaces."""

import tomllib

from fl_sim.app.cluster import CONNECTION, write_flwr_config, write_run_config

AWKWARD = 'C:\\certs\\my "lab" ca.crt'


def test_flower_config_round_trips_insecure_and_tls(tmp_path):
    plain = tomllib.loads(write_flwr_config(tmp_path, 9093, None).read_text())
    assert plain == {"superlink": {"default": CONNECTION,
                                   CONNECTION: {"address": "127.0.0.1:9093", "insecure": True}}}
    tls = tomllib.loads(write_flwr_config(tmp_path, 9094, {"ca": AWKWARD}).read_text())
    assert tls["superlink"][CONNECTION] == {"address": "127.0.0.1:9094", "root-certificates": AWKWARD}


def test_run_config_keeps_bools_and_ints_and_sends_the_rest_as_text(tmp_path):
    rc = {"node-partitions": True, "num-server-rounds": 3, "experiment": AWKWARD,
          "overrides": 'model.kind="cifg";client.lr=0.3', "output-dir": tmp_path / "out dir"}
    back = tomllib.loads(write_run_config(tmp_path, rc).read_text())
    assert back == {**rc, "output-dir": str(tmp_path / "out dir")}
