"""Deploys a CloudFormation template into the emulator, for the integration tests.

  stack.py create ENDPOINT STACK TEMPLATE [Key=Value ...]
      creates the stack with those parameters, waits until it is CREATE_COMPLETE (or fails,
      printing the failed resources' reasons), and prints {"Output": "value", ...}.

Uses botocore (installed in .emu/lint by scripts/setup) with the test credentials; the
emulator does not check signatures.
"""

import json
import sys
import time

import botocore.session


def client(endpoint, service):
    session = botocore.session.get_session()
    return session.create_client(
        service, region_name="us-east-1", endpoint_url=endpoint,
        aws_access_key_id="test", aws_secret_access_key="test")


def create(endpoint, name, template_path, pairs):
    cfn = client(endpoint, "cloudformation")
    with open(template_path) as f:
        body = f.read()
    parameters = []
    for pair in pairs:
        key, _, value = pair.partition("=")
        parameters.append({"ParameterKey": key, "ParameterValue": value})
    cfn.create_stack(StackName=name, TemplateBody=body, Parameters=parameters,
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
    deadline = time.monotonic() + 60
    while True:
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
            print(json.dumps(outputs))
            return 0
        if not status.endswith("IN_PROGRESS") or time.monotonic() > deadline:
            print(f"stack {name}: {status} {stack.get('StackStatusReason', '')}")
            events = cfn.describe_stack_events(StackName=name)["StackEvents"]
            for event in events:
                if event.get("ResourceStatus", "").endswith("FAILED"):
                    print(f"  {event['LogicalResourceId']}: {event.get('ResourceStatusReason')}")
            return 1
        time.sleep(0.2)


def main(argv):
    if argv[:1] == ["create"] and len(argv) >= 4:
        return create(argv[1], argv[2], argv[3], argv[4:])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
