#!/usr/bin/python3
# actions.py: a scriptable pymilter (libmilter) milter for the end-to-end
# tests. It does what a JSON "plan" file says and logs every callback it
# receives, one JSON object per line, to the plan's log file.
#
# Usage: actions.py SOCKET PLAN.json
#   SOCKET is a libmilter socket spec: inet:PORT@127.0.0.1 or unix:/path.
#
# Plan (all keys optional except "log"; Go side: realpeer.PyPlan):
#   {
#     "log": "/path/events.jsonl",
#     "macros": ["{extra}", ...],          # extra macro names to log
#     "stages": {                          # connect helo mail rcpt data
#       "rcpt": {                          # header eoh body eom
#         "action": "reject",              # continue|accept|reject|tempfail|discard
#         "match": "bad@",                 # only when the stage's text contains this
#         "delay_ms": 100,                 # sleep before answering
#         "reply": {"code": "550", "xcode": "5.7.1", "lines": ["a", "b"]}
#       }
#     },
#     "eom_actions": [                     # run in order at end of message
#       {"op": "addheader",   "name": "X-A", "value": "v"},
#       {"op": "insheader",   "name": "X-B", "value": "v", "index": 0},
#       {"op": "chgheader",   "name": "Subject", "index": 1, "value": ""},
#       {"op": "addrcpt",     "addr": "<c@example.com>", "args": "NOTIFY=NEVER"},
#       {"op": "delrcpt",     "addr": "<b@example.com>"},
#       {"op": "chgfrom",     "addr": "<new@example.org>", "args": ""},
#       {"op": "replacebody", "body": "new body\r\n"},
#       {"op": "quarantine",  "reason": "held by test"}
#     ]
#   }
#
# "match" text per stage: connect=hostname, helo=name, mail/rcpt=address,
# header="Name: value", body=chunk, others="". A stage whose match fails
# answers continue. chgheader with an empty value deletes the header.
#
# Log lines: {"conn": N, "stage": "rcpt", "args": [...], "macros": {...}}
# plus {"conn": N, "stage": "negotiate", "args": [actions, protocol]} and
# {"conn": N, "stage": "error", "args": [message]} when an action fails.
# Macros are those libmilter returns for the names asked for at that
# callback (it also returns macros sent at earlier stages).
#
# libmilter notices SIGTERM only about every 10 s, so the milter runs in a
# thread and the main thread exits at once on SIGTERM/SIGINT.

import json
import os
import signal
import sys
import threading
import time

import Milter

MACROS = [
    "j", "_", "v", "i", "{daemon_name}", "{daemon_addr}", "{daemon_port}",
    "{if_name}", "{if_addr}", "{client_addr}", "{client_name}",
    "{client_port}", "{client_ptr}", "{auth_type}", "{auth_authen}",
    "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}",
    "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}", "{msg_id}",
    "{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}",
    "{cert_issuer}",
]

RESULTS = {
    "continue": Milter.CONTINUE,
    "accept": Milter.ACCEPT,
    "reject": Milter.REJECT,
    "tempfail": Milter.TEMPFAIL,
    "discard": Milter.DISCARD,
}

plan = {}
log_lock = threading.Lock()
log_file = None


def text(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="surrogateescape")
    return str(v)


def write_log(obj):
    line = json.dumps(obj, ensure_ascii=False, default=str)
    with log_lock:
        log_file.write(line + "\n")
        log_file.flush()


class ActionsMilter(Milter.Base):
    """Milter whose answers come from the plan. Overriding every callback
    (without @noreply/@nocallback) negotiates all steps and keeps every
    action the MTA offers."""

    def __init__(self):
        self.conn = Milter.uniqueID()

    def negotiate(self, opts):
        offered = list(opts)
        rc = Milter.Base.negotiate(self, opts)
        if plan.get("read_only"):
            opts[0] = self._actions = 0
        write_log({"conn": self.conn, "stage": "negotiate",
                   "args": [hex(offered[0]), hex(offered[1]),
                            hex(opts[0]), hex(opts[1])]})
        return rc

    def record(self, stage, *args):
        macros = {}
        for name in MACROS + list(plan.get("macros", [])):
            try:
                v = self.getsymval(name)
            except Exception:
                v = None
            if v is not None:
                macros[name] = text(v)
        write_log({"conn": self.conn, "stage": stage,
                   "args": [text(a) for a in args], "macros": macros})

    def answer(self, stage, subject=""):
        st = plan.get("stages", {}).get(stage)
        if not st:
            return Milter.CONTINUE
        match = st.get("match")
        if match and match not in subject:
            return Milter.CONTINUE
        delay = st.get("delay_ms", 0)
        if delay:
            time.sleep(delay / 1000.0)
        action = st.get("action", "continue")
        rep = st.get("reply")
        if rep and action in ("reject", "tempfail"):
            lines = rep.get("lines") or [""]
            try:
                self.setreply(rep.get("code", "550" if action == "reject" else "451"),
                              rep.get("xcode") or None, *lines)
            except Exception as e:
                write_log({"conn": self.conn, "stage": "error",
                           "args": ["setreply: %s" % e]})
        return RESULTS[action]

    def connect(self, hostname, family, hostaddr):
        self.record("connect", hostname, family, hostaddr)
        return self.answer("connect", text(hostname))

    def hello(self, name):
        self.record("helo", name)
        return self.answer("helo", text(name))

    def envfrom(self, f, *params):
        self.record("mail", f, *params)
        return self.answer("mail", text(f))

    def envrcpt(self, to, *params):
        self.record("rcpt", to, *params)
        return self.answer("rcpt", text(to))

    def data(self):
        self.record("data")
        return self.answer("data")

    def header(self, name, value):
        self.record("header", name, value)
        return self.answer("header", "%s: %s" % (text(name), text(value)))

    def eoh(self):
        self.record("eoh")
        return self.answer("eoh")

    def body(self, chunk):
        self.record("body", chunk)
        return self.answer("body", text(chunk))

    def unknown(self, cmd):
        self.record("unknown", cmd)
        return Milter.CONTINUE

    def eom(self):
        self.record("eom")
        for a in plan.get("eom_actions", []):
            try:
                self.do(a)
            except Exception as e:
                write_log({"conn": self.conn, "stage": "error",
                           "args": ["%s: %s" % (a.get("op"), e)]})
        return self.answer("eom")

    def do(self, a):
        op = a.get("op")
        args = a.get("args") or None
        if op == "addheader":
            self.addheader(a["name"], a.get("value", ""))
        elif op == "insheader":
            self.addheader(a["name"], a.get("value", ""), a.get("index", 0))
        elif op == "chgheader":
            v = a.get("value", "")
            self.chgheader(a["name"], a.get("index", 1), v if v != "" else None)
        elif op == "addrcpt":
            self.addrcpt(a["addr"], args)
        elif op == "delrcpt":
            self.delrcpt(a["addr"])
        elif op == "chgfrom":
            self.chgfrom(a["addr"], args)
        elif op == "replacebody":
            self.replacebody(a.get("body", "").encode("utf-8"))
        elif op == "quarantine":
            self.quarantine(a.get("reason", "quarantined by test"))
        else:
            raise ValueError("unknown op %r" % op)

    def abort(self):
        self.record("abort")
        return Milter.CONTINUE

    def close(self):
        self.record("close")
        return Milter.CONTINUE


def main():
    global plan, log_file
    if len(sys.argv) != 3:
        sys.stderr.write("usage: actions.py SOCKET PLAN.json\n")
        sys.exit(2)
    sock, plan_path = sys.argv[1], sys.argv[2]
    with open(plan_path) as f:
        plan = json.load(f)
    for name, st in plan.get("stages", {}).items():
        if st.get("action", "continue") not in RESULTS:
            sys.stderr.write("actions.py: stage %s: bad action %r\n" % (name, st.get("action")))
            sys.exit(2)
    log_file = open(plan["log"], "a", encoding="utf-8")

    def stop(signum, frame):
        log_file.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    Milter.factory = ActionsMilter
    err = []

    def run():
        try:
            Milter.runmilter("actions", sock, timeout=60)
        except Exception as e:
            err.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.2)
    if err:
        sys.stderr.write("actions.py: runmilter: %s\n" % err[0])
        os._exit(1)
    os._exit(0)


if __name__ == "__main__":
    main()
