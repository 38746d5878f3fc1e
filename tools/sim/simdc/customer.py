"""simdc customer start|stop|reboot UUID: what a customer's start, stop or
reboot (CloudAPI, AdminUI, `triton instance start`) makes of it in Triton:
VMAPI's POST /vms/UUID?action=ACTION, whose job takes the instance's CNAPI
waitlist ticket and has its compute node run vmadm (api/vmapi.py
vm_action_job). It waits for the job and prints each of its tasks as it
ends, then the outcome: exit 0 if the job succeeded, 1 if it failed, 2 if
VMAPI refused the action.
"""
import sys
import time

from . import common

POLL = 0.2


def main(args):
    status, body = common.api("vmapi", "POST", "/vms/%s?action=%s" % (args.uuid, args.action))
    if status != 202:
        msg = body.get("message") if isinstance(body, dict) else body
        sys.stderr.write("simdc customer: VMAPI refused to %s %s: %s %s\n"
                         % (args.action, args.uuid, status, msg))
        return 2
    job_uuid = body["job_uuid"]
    print("job %s: %s of %s" % (job_uuid, args.action, args.uuid), flush=True)
    shown = 0
    while True:
        status, job = common.api("vmapi", "GET", "/jobs/" + job_uuid)
        if status != 200:
            sys.stderr.write("simdc customer: GET /jobs/%s: %s\n" % (job_uuid, status))
            return 1
        for r in job["chain_results"][shown:]:
            print("  %s: %s" % (r.get("name"), ("error: " + r["error"]) if r.get("error")
                                else r.get("result")), flush=True)
        shown = len(job["chain_results"])
        if job["execution"] in ("succeeded", "failed", "canceled"):
            print("job %s %s" % (job_uuid, job["execution"]), flush=True)
            return 0 if job["execution"] == "succeeded" else 1
        time.sleep(POLL)
