"""Tools files: servers checked against the ToolServer CRD's schema, errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kswarm.errors import ConfigError
from kswarm.tools.servers import load_tools_file, parse_tools_text, server_config, server_entry


def test_defaults_come_from_the_crd() -> None:
    (http, stdio) = parse_tools_text(
        "servers:\n"
        "  - {name: search, url: 'https://tools.example.com/mcp', bearerTokenEnv: TOKEN}\n"
        "  - {name: time, command: mcp-server-time, args: [--local-timezone, UTC]}\n",
        "tools.yaml",
    )
    assert (http.transport, stdio.transport) == ("http", "stdio")
    assert (http.timeout_seconds, http.max_concurrency, http.long_running) == (60.0, 16, False)
    assert stdio.args == ("--local-timezone", "UTC")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "servers: [{name: a}]",
            "tools.yaml: servers[0]: set exactly one of servers[0].url (streamable HTTP) or "
            "servers[0].command (stdio)",
            id="neither-url-nor-command",
        ),
        pytest.param(
            "servers: [{name: a, url: 'http://x/mcp', command: x}]",
            "servers[0]: set exactly one of",
            id="both-url-and-command",
        ),
        pytest.param(
            "servers: [{name: my_server, command: x}]",
            "servers[0].name: must be letters, digits and '-'",
            id="underscore-in-name",
        ),
        pytest.param(
            "servers: [{name: a, url: 'ftp://x'}]",
            "servers[0].url: 'ftp://x' does not match ^https?://",
            id="url-scheme",
        ),
        pytest.param(
            "servers: [{name: a, command: x, maxConcurrency: 0}]",
            "servers[0].maxConcurrency: must be between 1 and 1024, got 0",
            id="max-concurrency",
        ),
        pytest.param(
            "servers: [{name: a, command: x, colour: red}]",
            "servers[0].colour: unknown field",
            id="unknown-field",
        ),
        pytest.param(
            "servers: [{name: a, url: 'http://x', bearerTokenSecret: {name: s}}]",
            "servers[0].bearerTokenSecret: only a ToolServer object names a Secret",
            id="secret-outside-kubernetes",
        ),
        pytest.param(
            "servers: [{name: a, command: x}, {name: a, command: y}]",
            "servers[1].name: 'a' is listed twice",
            id="duplicate",
        ),
        pytest.param("pools: []", "must be a mapping with one key, servers", id="wrong-key"),
    ],
)
def test_bad_tools_files_are_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_tools_text(text, "tools.yaml")
    assert message in str(e.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tools file .*nope\.yaml"):
        load_tools_file(str(tmp_path / "nope.yaml"))


def test_an_entry_reads_back_the_same_and_keeps_tokens_out(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    (server,) = parse_tools_text(
        f"servers: [{{name: a, url: 'http://x/mcp', bearerTokenFile: '{token}', "
        "headers: {X-Team: blue}, requireApproval: [drop]}]",
        "t",
    )
    entry = server_entry(server)
    assert "s3cret" not in str(entry)
    assert parse_tools_text(str({"servers": [entry]}), "t") == [server]
    assert server.http_headers() == {"X-Team": "blue", "Authorization": "Bearer s3cret"}
    assert server.requires_approval("drop") and not server.requires_approval("read")


def test_an_unset_token_variable_names_the_server_and_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    (server,) = parse_tools_text(
        "servers: [{name: a, url: 'http://x/mcp', bearerTokenEnv: NO_SUCH_TOKEN}]", "t"
    )
    with pytest.raises(ConfigError, match="tool server 'a': bearerTokenEnv NO_SUCH_TOKEN"):
        server.http_headers()


def test_the_examples_are_valid_tools_files_and_toolservers() -> None:
    examples = Path(__file__).resolve().parents[3] / "examples"
    names = [s.name for s in load_tools_file(str(examples / "tools.yaml"))]
    assert names == ["time", "git"]
    ts = yaml.safe_load((examples / "toolserver.yaml").read_text())
    assert server_config(ts["metadata"]["name"], ts["spec"]).url == ts["spec"]["url"]
