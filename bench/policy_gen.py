"""A generated, realistic 200-rule policy and a command mix to judge it by.

The policy looks like one a platform team grows over a year: a handful of deny rules
by name (wrappers, destructive commands, credential reads, metadata services), many
allow rules over varied diagnostics with typed placeholders (int ranges, paths under
prefixes, hosts, enums, regexes, globs, the rest marker), approve rules for captures,
installs and profilers, several roles (local users, Slack users and groups, MCP
clients) and several targets. Generation is seeded: every run judges the same policy.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from policies.rules.commands import parse_command_text
from policies.types import Principal, PrincipalKind, Target

Stages = tuple[tuple[str, ...], ...]

RULES = 200
SEED = 20261103

ROLES = """\
roles:
  oncall:
    local_users: ["*"]
    mcp_clients: [assistant-prod, assistant-staging]
    slack_users: [U0ONCALL1, U0ONCALL2, U0ONCALL3]
    slack_groups: [S0SRE]
  developers:
    slack_groups: [S0DEV, S0QA]
    mcp_clients: ["*"]
  leads:
    local_users: [lead-1, lead-2]
    slack_users: [U0LEAD1, U0LEAD2]
  auditors:
    slack_users: [U0AUDIT]
targets:
  prod:
    provider: "fc-*"
    functions: ["orders-*", "payments-api", "checkout-*"]
    qualifiers: [LATEST, prod]
  staging: { provider: "*", functions: ["*-staging", "staging-*"] }
  demo: { provider: "*", functions: ["demo-*"] }
  bench: { provider: "*", functions: ["bench-*"] }
  batch: { provider: fc-batch, functions: ["etl-*", "report-*"] }
defaults:
  timeout: 60s
  idle_timeout: 600s
  max_output: 1MiB
  rate: 100000/min
"""

_WRAPPERS = (
    "sh,bash,dash,zsh,ash,ksh,busybox,xargs,nohup,timeout,nice,setsid,stdbuf,watch,script,"
    "strace,gdb,nsenter,chroot,unshare,sudo,su,doas,python*,perl*,ruby*,node*,php*,awk,gawk,"
    "sed,find,tar,ssh,socat,nc,ncat,vi,vim,less,more,git,docker,kubectl"
)
_DESTRUCTIVE = (
    "rm,rmdir,unlink,shred,dd,truncate,mkfs,mkfs.*,shutdown,reboot,halt,systemctl,service,"
    "kill,killall,pkill,mount,umount,chmod,chown,mv,ln,iptables,nft,useradd,passwd,sysctl,"
    "modprobe"
)
_READERS = "cat,head,tail,strings,od,xxd,base64,cp,grep,zcat,diff,sort,stat,ls"
_SECRET_PATHS = (
    "/proc/*/environ,/proc/*/mem,/etc/shadow,/etc/sudoers,/root/**,/home/*/.ssh/**,"
    "/var/run/secrets/**"
)
_METADATA = r"/.*(100\\.100\\.100\\.200|169\\.254\\.169\\.254).*/"
_OPTIONAL = '"{o1:/.*/}?", "{o2:/.*/}?"'

DENY_RULES = f"""\
  - id: no-shells-or-wrappers
    effect: deny
    who: ["*"]
    where: ["*"]
    commands:
      - ["{{cmd:program({_WRAPPERS})}}", "..."]
      - ["{{cmd:program(env)}}", "{{first:/.*/}}", "..."]
  - id: no-destructive
    effect: deny
    who: ["*"]
    where: ["*"]
    commands:
      - ["{{cmd:program({_DESTRUCTIVE})}}", "..."]
  - id: no-credential-reading
    effect: deny
    who: ["*"]
    where: ["*"]
    commands:
      - ["{{cmd:program({_READERS})}}", {_OPTIONAL}, "{{file:path({_SECRET_PATHS})}}", "..."]
      - ["{{cmd:program(curl,wget,nc,telnet)}}", {_OPTIONAL}, "{_METADATA}", "..."]
  - id: no-package-removal
    effect: deny
    who: ["*"]
    where: [prod]
    commands:
      - [apt-get, "{{op:oneof(remove,purge,autoremove)}}", "..."]
      - [pip, uninstall, "..."]
"""

# (program, argument patterns) templates for allow rules; each rule takes 1-4 of them.
_ALLOW_TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("ps", "{flags:oneof(aux,auxww,-ef,-eF)}"),
    ("top", "-b", "-n", "{n:int(1..5)}"),
    ("df", "{flags:oneof(-h,-hT,-i)}?"),
    ("free", "{unit:oneof(-m,-h,-g)}?"),
    ("uptime",),
    ("ls", "{flags:oneof(-l,-la,-lah,-ltr)}?", "{dir:path(/tmp/**,/code/**,/var/log/**)}"),
    ("cat", "{file:path(/proc/meminfo,/proc/loadavg,/proc/cpuinfo,/code/**)}"),
    ("ss", "{flags:oneof(-s,-tn,-tnp,-tln,-an)}"),
    ("netstat", "{flags:oneof(-s,-tn,-tnp,-rn)}"),
    ("id",),
    ("whoami",),
    ("hostname",),
    ("date",),
    ("uname", "{flags:oneof(-a,-r,-m)}?"),
    ("head", "-n", "{n:int(1..10000)}", "{file:path(/tmp/**,/var/log/**)}"),
    ("tail", "-n", "{n:int(1..10000)}", "{file:path(/tmp/**,/var/log/**)}"),
    ("du", "-sh", "{dir:path(/tmp/**,/code/**)}"),
    ("lsof", "-p", "{pid:int(1..4194304)}"),
    ("dig", "{name:hostname}", "{type:oneof(A,AAAA,CNAME,MX,TXT)}?"),
    ("nslookup", "{name:hostname}"),
    ("ping", "-c", "{n:int(1..10)}", "{host:host}"),
    ("curl", "-sS", "-o", "/dev/null", "{url:url(http://127.0.0.1:*/*)}"),
    ("traceroute", "-n", "{host:host}"),
    ("vmstat", "{interval:int(1..5)}", "{count:int(1..10)}"),
    ("iostat", "-x", "{interval:int(1..5)}?"),
    ("journalctl", "-u", "{unit:/[a-z0-9@._-]+/}", "-n", "{n:int(1..1000)}"),
    ("dmesg", "{flags:oneof(-T,-H)}?"),
    ("stat", "{file:path(/tmp/**,/code/**)}"),
    ("sha256sum", "{file:path(/code/**)}"),
    ("printenv", "{name:/[A-Za-z_][A-Za-z0-9_]*/}"),
    ("ip", "{obj:oneof(addr,route,link)}", "show"),
    ("getent", "{db:oneof(hosts,passwd,group)}", "{key:str}"),
    ("nproc",),
    ("lscpu",),
    ("jstack", "{pid:int(1..4194304)}"),
    ("jcmd", "{pid:int(1..4194304)}", "{cmd:oneof(VM.flags,GC.heap_info,Thread.print)}"),
    ("redis-cli", "-h", "{host:host}", "{cmd:oneof(INFO,PING,DBSIZE)}"),
    ("openssl", "s_client", "-connect", "/[a-z0-9.-]+:[0-9]{1,5}/", "..."),
    (
        "grep",
        "{flags:oneof(-i,-c,-n,-in)}?",
        "{pattern:str}",
        "{file:path(/var/log/*.log,/tmp/*.log)}",
    ),
    ("wc", "-l", "{file:path(/var/log/*.log,/tmp/**)}"),
    ("md5sum", "{file:path(/code/*.jar,/code/*.so)}"),
    ("pidstat", "-p", "{pid:int(1..4194304)}", "{i:int(1..5)}"),
    ("sar", "{flag:oneof(-u,-r,-n)}", "..."),
    ("cat", "/code/*.properties"),
    ("ls", "/code/lib/*.jar"),
)

_APPROVE_TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("apt-get", "install", "-y", "{pkg:oneof(tcpdump,curl,procps,iproute2,dnsutils,lsof)}"),
    (
        "tcpdump",
        "-i",
        "{if:oneof(any,eth0,lo)}",
        "-c",
        "{n:int(1..100000)}",
        "-w",
        "{file:path(/tmp/*.pcap)}",
        "port",
        "{port:int(1..65535)}",
    ),
    ("jmap", "{mode:oneof(-histo,-histo:live)}", "{pid:int(1..4194304)}"),
    ("py-spy", "dump", "--pid", "{pid:int(1..4194304)}"),
    (
        "go",
        "tool",
        "pprof",
        "-proto",
        "-seconds",
        "{s:int(1..120)}",
        "{url:url(http://127.0.0.1:*/debug/pprof/*)}",
    ),
    ("pip", "install", "{pkg:/[a-z0-9_-]+(==[0-9.]+)?/}"),
    (
        "perf",
        "record",
        "-F",
        "{hz:int(1..999)}",
        "-p",
        "{pid:int(1..4194304)}",
        "--",
        "sleep",
        "{s:int(1..60)}",
    ),
)

_WHO = ("[oncall]", "[oncall, developers]", "[developers]", "[leads]", "[oncall, leads]")
_WHERE = ("[prod]", "[staging]", "[demo, staging]", "[batch]", "[prod, staging]", '["*"]')


def _yaml_list(items: tuple[str, ...]) -> str:
    return (
        "[" + ", ".join(f'"{i}"' if any(c in i for c in '{}*?[]:%,"') else i for i in items) + "]"
    )


def _rule(rule_id: str, effect: str, who: str, where: str, commands: list[tuple[str, ...]]) -> str:
    lines = [
        f"  - id: {rule_id}",
        f"    effect: {effect}",
        f"    who: {who}",
        f"    where: {where}",
    ]
    lines.append("    commands:")
    lines += [f"      - {_yaml_list(c)}" for c in commands]
    if effect == "approve":
        lines.append("    approval: { approvers: [leads], threshold: 1, ttl: 15m }")
    return "\n".join(lines)


def _generated_rules(count: int, rng: random.Random) -> Iterator[str]:
    for index in range(count):
        approve = index % 7 == 6
        templates = _APPROVE_TEMPLATES if approve else _ALLOW_TEMPLATES
        picked = rng.sample(templates, k=min(len(templates), rng.randint(1, 4)))
        who, where = rng.choice(_WHO), rng.choice(_WHERE)
        effect = "approve" if approve else "allow"
        body = _rule(f"{effect}-{index:03d}", effect, who, where, list(picked))
        if not approve and rng.random() < 0.3:
            body += (
                "\n    pipeline:\n      allow: true\n      extra_stages:\n"
                '        - [grep, "{flags:oneof(-i,-v,-c)}?", "{pattern:str}"]\n'
                '        - [head, "{flags:oneof(-n)}?", "{n:int(1..10000)}?"]\n'
                '        - [wc, "{flags:oneof(-l,-c)}?"]'
            )
        yield body


def policy_text(*, rules: int = RULES, extra_rules: str = "") -> str:
    """A policy of exactly ``rules`` rules; ``extra_rules`` (YAML list items) come on top,
    before the generated allow rules, so that they decide the commands they name."""
    deny_count = DENY_RULES.count("  - id: ")
    rng = random.Random(SEED)
    generated = "\n".join(_generated_rules(rules - deny_count, rng))
    return f"version: 1\n{ROLES}rules:\n{DENY_RULES}{extra_rules}{generated}\n"


@dataclass(frozen=True, slots=True)
class Case:
    principal: Principal
    target: Target
    stages: Stages
    text: str


_PRINCIPALS = (
    Principal(PrincipalKind.LOCAL, "alice"),
    Principal(PrincipalKind.SLACK, "U0ONCALL2", frozenset({"S0SRE"})),
    Principal(PrincipalKind.SLACK, "U0DEV77", frozenset({"S0DEV"})),
    Principal(PrincipalKind.MCP, "assistant-prod"),
    Principal(PrincipalKind.SLACK, "U0LEAD1"),
)
_TARGETS = (
    Target("orders-api", "c-1a2b3c4d-5e6f7a8b-9c0d1e2f3a4b", "fc-prod"),
    Target("payments-api", "c-2b3c4d5e-6f7a8b9c-0d1e2f3a4b5c", "fc-prod", "prod"),
    Target("orders-staging", "c-3c4d5e6f-7a8b9c0d-1e2f3a4b5c6d", "local"),
    Target("etl-nightly", "c-4d5e6f7a-8b9c0d1e-2f3a4b5c6d7e", "fc-batch"),
    Target("demo-api", "c-5e6f7a8b-9c0d1e2f-3a4b5c6d7e8f", "local"),
)

# What people and assistants actually type: mostly diagnostics that are allowed, some
# that need approval, pipelines, and the refusals (wrappers, credentials, unknown tools).
COMMANDS: tuple[str, ...] = (
    "ps aux",
    "ps -ef",
    "top -b -n 1",
    "df -h",
    "free -m",
    "uptime",
    "ls -la /tmp",
    "ls -lah /var/log/app",
    "cat /proc/meminfo",
    "cat /proc/loadavg",
    "cat /code/config/app.properties",
    "ss -tnp",
    "netstat -rn",
    "id",
    "hostname",
    "uname -a",
    "head -n 100 /var/log/app/error.log",
    "tail -n 500 /var/log/app/access.log",
    "du -sh /tmp/cache",
    "lsof -p 4121",
    "dig orders-db.internal.example.com A",
    "ping -c 3 10.0.0.12",
    "curl -sS -o /dev/null http://127.0.0.1:9000/healthz",
    "vmstat 1 5",
    "journalctl -u orders-api.service -n 200",
    "printenv APP_ENV",
    "ip addr show",
    "getent hosts orders-db",
    "jstack 4121",
    "jcmd 4121 GC.heap_info",
    "redis-cli -h 10.0.0.31 INFO",
    "grep -i timeout /var/log/app.log",
    "wc -l /var/log/app.log",
    "ps aux | grep java | head -n 5",
    "ss -tn | wc -l",
    "cat /proc/meminfo | grep -i dirty",
    "tcpdump -i any -c 1000 -w /tmp/cap.pcap port 443",
    "apt-get install -y tcpdump",
    "jmap -histo:live 4121",
    "py-spy dump --pid 4121",
    "pip install requests==2.32.3",
    "bash -c 'cat /etc/passwd'",
    "sh -c id",
    "python3 -c 'import os; print(os.environ)'",
    "env LD_PRELOAD=/tmp/x.so ps",
    "rm -rf /tmp/cache",
    "kill -9 1",
    "cat /etc/shadow",
    "cat /proc/1/environ",
    "curl -s http://100.100.100.200/latest/meta-data/ram/security-credentials/",
    "find / -name '*.key'",
    "strace -p 4121",
    "nmap -sS 10.0.0.0/24",
    "mysql -h orders-db -u root",
    "apt-get remove -y curl",
    "ls /root/.ssh",
    "docker ps",
    "chmod 777 /tmp",
    "ping -c 50 10.0.0.12",
    "head -n 100 /etc/passwd",
)


def cases() -> list[Case]:
    """Every command for every principal and target: the mix the engine is judged on."""
    out = []
    for text in COMMANDS:
        stages = parse_command_text(text).stages
        for principal in _PRINCIPALS:
            for target in _TARGETS:
                out.append(Case(principal, target, stages, text))
    return out
