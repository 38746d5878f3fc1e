"""svcadm(8) of a simulated SmartOS compute node.

  svcadm [-v] restart|enable|disable|refresh|clear [-s] [-t] [-r] FMRI...

FMRIs may be short (vm-agent, vmadmd, heartbeater) or full
(svc:/smartdc/agent/vm-agent:default). Restarting vm-agent, vmadmd or
heartbeater sends vm-agent's report before returning, as the seed relies on
("Restarting vmadmd on dest-server, to ensure detection of transferred VM's
presence"); if VMAPI or CNAPI cannot take it, svcadm says so and exits 1.
`disable vm-agent` stops its reports until `enable vm-agent`.
"""
import sys

from .. import common, vmagent


REPORTING = ("vm-agent", "vmadmd", "heartbeater")
# other services of a Triton CN that may be named; restarting them does nothing here
OTHERS = ("cn-agent", "ur", "zonetracker", "metadata", "vminfod", "firewaller", "net-agent",
          "config-agent", "amon-agent", "amon-relay", "smartlogin", "ssh", "sysevent",
          "zones", "cron", "ntp", "rsyslog", "syslog")

USAGE = """Usage: svcadm [-S <state>] [-v] [-Z | -z zone] [cmd [args ... ]]

	svcadm enable [-rst] [<service> ...]	- enable and online service(s)
	svcadm disable [-st] [<service> ...]	- disable and offline service(s)
	svcadm restart [-d] [<service> ...]	- restart specified service(s)
	svcadm refresh [<service> ...]		- re-read service configuration
	svcadm mark [-It] <state> [<service> ...] - set maintenance state
	svcadm clear [<service> ...]		- clear maintenance state
	svcadm milestone [-d] <milestone>	- advance to a service milestone

	Services can be specified using an FMRI, abbreviation, or fnmatch(5)
	pattern, as shown in these examples for svc:/network/smtp:sendmail

	svcadm <cmd> svc:/network/smtp:sendmail
	svcadm <cmd> network/smtp:sendmail
	svcadm <cmd> network/*mail
	svcadm <cmd> network/smtp
	svcadm <cmd> smtp:sendmail
	svcadm <cmd> smtp
	svcadm <cmd> sendmail
"""


def service_name(fmri):
    s = fmri
    if s.startswith("svc:/"):
        s = s[len("svc:/"):]
    s = s.split(":")[0]
    return s.rstrip("/").split("/")[-1]


def main(argv):
    args = [a for a in argv if a != "-v"]
    if not args:
        sys.stderr.write(USAGE)
        return 2
    cmd, rest = args[0], args[1:]
    if cmd not in ("restart", "enable", "disable", "refresh", "clear"):
        sys.stderr.write(USAGE)
        return 2
    fmris = [a for a in rest if not a.startswith("-")]
    if not fmris:
        sys.stderr.write(USAGE)
        return 2
    host = common.this_host()
    rc = 0
    want_report = False
    for fmri in fmris:
        name = service_name(fmri)
        if name not in REPORTING and name not in OTHERS:
            sys.stderr.write("svcadm: Pattern '%s' doesn't match any instances\n" % fmri)
            rc = 1
            continue
        if name == "vm-agent" and cmd == "disable":
            vmagent.set_disabled(host, True)
        elif name == "vm-agent" and cmd == "enable":
            vmagent.set_disabled(host, False)
            want_report = True
        elif name in REPORTING and cmd == "restart":
            want_report = True
    if want_report and not vmagent.is_disabled(host):
        try:
            vmagent.report(host)
        except vmagent.ReportError as e:
            sys.stderr.write("svcadm: vm-agent could not report to VMAPI: %s\n" % e)
            rc = 1
    return rc

