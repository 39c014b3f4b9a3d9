#!/usr/bin/env python3
"""Small DNS APIs in front of PowerDNS, for the provider tests.

    api_bridge.py PDNS_API_URL PORTFILE   (PDNS key in LUACME_PDNS_API_KEY,
                                           BRIDGE_TOKEN, BRIDGE_USER,
                                           BRIDGE_PASS in the environment)

Listens on a free 127.0.0.1 port (written to PORTFILE once listening)
and turns two styles of in-house DNS API into PowerDNS API calls, so
Pebble resolves what they write:

  lego's httpreq protocol, basic auth BRIDGE_USER:BRIDGE_PASS:
    POST /httpreq/present  {"fqdn": "...", "value": "..."}  adds the value
    POST /httpreq/cleanup  (same)                           removes it
  a record API by id (the shape of examples/dns-provider-example.lua,
  like most hosted DNS APIs), header "Authorization: Bearer BRIDGE_TOKEN":
    GET    /v1/zones                      [{"name": "example.test."}, ...]
    POST   /v1/zones/ZONE/records         {"type": "TXT", "name", "content",
                                           "ttl"} -> 201 {"id": "..."}
    DELETE /v1/zones/ZONE/records/ID      -> 204
  GET /_log   every request seen (method, path, auth header present)

Each write adds or removes exactly one value of the TXT RRset.
"""

import base64
import http.server
import json
import os
import secrets
import sys
import threading
import urllib.error
import urllib.request

PDNS = sys.argv[1].rstrip("/") + "/api/v1/servers/localhost"
KEY = os.environ["LUACME_PDNS_API_KEY"]
TOKEN = os.environ.get("BRIDGE_TOKEN", "")
USER = os.environ.get("BRIDGE_USER", "")
PASS = os.environ.get("BRIDGE_PASS", "")
LOCK = threading.Lock()
RECORDS = {}          # id -> (zone, name, content)
LOG = []


def pdns(method, path, doc=None):
    data = json.dumps(doc).encode() if doc is not None else None
    req = urllib.request.Request(PDNS + path, data=data, method=method,
                                 headers={"X-API-Key": KEY,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        return e.code, None


def zones():
    status, doc = pdns("GET", "/zones")
    return [z["name"] for z in doc] if status == 200 else []


def zone_of(name):
    best = None
    for z in zones():
        if (name == z or name.endswith("." + z)) and \
                (best is None or len(z) > len(best)):
            best = z
    return best


def change(zone, name, value, add):
    """Add or remove one TXT value at name; True on success."""
    status, doc = pdns("GET", "/zones/" + zone)
    if status != 200:
        return False
    content = '"%s"' % value
    old = [r["content"] for s in doc["rrsets"]
           if s["name"] == name and s["type"] == "TXT"
           for r in s["records"]]
    new = [c for c in old if c != content] + ([content] if add else [])
    rr = {"name": name, "type": "TXT", "ttl": 60, "changetype": "REPLACE",
          "records": [{"content": c, "disabled": False} for c in new]}
    if not new:
        rr = {"name": name, "type": "TXT", "changetype": "DELETE"}
    status, _ = pdns("PATCH", "/zones/" + zone, {"rrsets": [rr]})
    return status == 204


def fqdn(n):
    return n.lower().rstrip(".") + "."


class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, status, doc=None):
        body = json.dumps(doc).encode() if doc is not None else b""
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            return None

    def seen(self):
        with LOCK:
            LOG.append({"method": self.command, "path": self.path,
                        "auth": bool(self.headers.get("Authorization"))})

    def basic_ok(self):
        want = "Basic " + base64.b64encode(
            ("%s:%s" % (USER, PASS)).encode()).decode()
        return self.headers.get("Authorization") == want

    def bearer_ok(self):
        return self.headers.get("Authorization") == "Bearer " + TOKEN

    def do_GET(self):
        self.seen()
        if self.path == "/_log":
            with LOCK:
                return self.reply(200, LOG)
        if self.path == "/v1/zones":
            if not self.bearer_ok():
                return self.reply(401, {"error": "bad token"})
            return self.reply(200, [{"name": z} for z in zones()])
        self.reply(404, {"error": "not found"})

    def do_POST(self):
        self.seen()
        parts = self.path.strip("/").split("/")
        if parts[0] == "httpreq" and len(parts) == 2 and \
                parts[1] in ("present", "cleanup"):
            if not self.basic_ok():
                return self.reply(401, {"error": "bad credentials"})
            doc = self.body()
            if not isinstance(doc, dict) or not doc.get("fqdn") or \
                    not doc.get("value"):
                return self.reply(400, {"error": "fqdn and value wanted"})
            name = fqdn(doc["fqdn"])
            zone = zone_of(name)
            if zone is None:
                return self.reply(404, {"error": "no zone for " + name})
            with LOCK:
                ok = change(zone, name, doc["value"], parts[1] == "present")
            return self.reply(200 if ok else 500)
        if len(parts) == 4 and parts[:2] == ["v1", "zones"] and \
                parts[3] == "records":
            if not self.bearer_ok():
                return self.reply(401, {"error": "bad token"})
            zone = fqdn(parts[2])
            if zone not in zones():
                return self.reply(404, {"error": "no such zone " + zone})
            doc = self.body()
            if not isinstance(doc, dict) or doc.get("type") != "TXT":
                return self.reply(400, {"error": "only TXT records"})
            name = fqdn(doc.get("name") or "")
            if not (name == zone or name.endswith("." + zone)):
                return self.reply(422, {"error": name + " is not in " + zone})
            with LOCK:
                if not change(zone, name, doc.get("content", ""), True):
                    return self.reply(500, {"error": "backend failed"})
                rid = secrets.token_hex(8)
                RECORDS[rid] = (zone, name, doc.get("content", ""))
            return self.reply(201, {"id": rid})
        self.reply(404, {"error": "not found"})

    def do_DELETE(self):
        self.seen()
        parts = self.path.strip("/").split("/")
        if len(parts) == 5 and parts[:2] == ["v1", "zones"] and \
                parts[3] == "records":
            if not self.bearer_ok():
                return self.reply(401, {"error": "bad token"})
            with LOCK:
                rec = RECORDS.get(parts[4])
                if rec is None or rec[0] != fqdn(parts[2]):
                    return self.reply(404, {"error": "no such record"})
                if not change(rec[0], rec[1], rec[2], False):
                    return self.reply(500, {"error": "backend failed"})
                del RECORDS[parts[4]]
            return self.reply(204)
        self.reply(404, {"error": "not found"})


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    portfile = sys.argv[2]
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(portfile + ".tmp", portfile)
    srv.serve_forever()


if __name__ == "__main__":
    main()
