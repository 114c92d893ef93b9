"""Header handling of the direct proxy: what it relays from the upstream and how it writes its own."""

from __future__ import annotations

from router_service.adapters.proxy import _wire, passthrough_headers


def test_passthrough_keeps_bytes_joins_repeats_and_drops_hop_by_hop() -> None:
    raw = [
        (b"Content-Type", b"application/json"),
        (b"X-Upstream", "caf\u00e9 \u6a21\u578b".encode()),
        (b"Vary", b"accept"),
        (b"vary", b"origin"),
        (b"Connection", b"keep-alive"),
        (b"Transfer-Encoding", b"chunked"),
    ]
    out = passthrough_headers(raw)
    assert out == {
        "content-type": "application/json",
        "x-upstream": "caf\u00e9 \u6a21\u578b".encode().decode("latin-1"),
        "vary": "accept, origin",
    }
    assert out["x-upstream"].encode("latin-1") == "caf\u00e9 \u6a21\u578b".encode()  # the bytes go out unchanged


def test_wire_writes_utf8_bytes() -> None:
    assert _wire({"x-vsr-selected-model": "\u6a21\u578b"})["x-vsr-selected-model"].encode("latin-1") == (
        "\u6a21\u578b".encode()
    )
    assert _wire({"a": "plain"}) == {"a": "plain"}
