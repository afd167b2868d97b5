"""Checks of the deployment files that need AWS's own models, run by tests/it/deploy.rs.

  check.py validate-api ecs RegisterTaskDefinition ecs-task.json
      validates the JSON against the operation's input shape in botocore's service model
      (the model the AWS CLI uses): unknown keys, wrong types, missing required members.
  check.py iam-actions deploy/iam.yaml
      prints {"Role": ["service:Action", ...]} for every IAM role in a CloudFormation
      template, so the test can compare the grants with what the daemon calls.
"""

import json
import sys


def validate_api(service, operation, path):
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).input_shape
    with open(path) as f:
        params = json.load(f)
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        print(report.generate_report())
        return 1
    print(f"{path}: valid {service} {operation} input (botocore {botocore.__version__})")
    return 0


def iam_actions(path):
    from cfnlint.decode import decode

    template, matches = decode(path)
    if matches:
        for match in matches:
            print(match)
        return 1
    roles = {}
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::IAM::Role":
            continue
        actions = []
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                action = statement["Action"]
                actions.extend([action] if isinstance(action, str) else action)
        roles[name] = sorted(actions)
    print(json.dumps(roles))
    return 0


def main(argv):
    if argv[:1] == ["validate-api"] and len(argv) == 4:
        return validate_api(*argv[1:])
    if argv[:1] == ["iam-actions"] and len(argv) == 2:
        return iam_actions(argv[1])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
