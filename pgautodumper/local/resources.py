"""The emulated resources of one backup, as the Terraform module would create them.

KMS key and encrypted bucket, the database secret (RDS format), an SNS topic
with an SQS subscriber that captures every notification, the six Lambdas
(a tiny zip; the Handler strings are what the emulator runs), the ECS cluster
and its two task definitions, and the state machine rendered from the same
template with the same placeholders Terraform uses.
"""

from __future__ import annotations

import io
import json
import secrets
import zipfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from pgautodumper.local.ecs_runner import LOCAL_IMAGE
from pgautodumper.local.emulator import REGION, Emulator
from pgautodumper.local.render import render

LAMBDAS = (
    "lookup_secret",
    "preflight",
    "record",
    "record_verify",
    "task_failure",
    "prune",
    "release_lock",
    "notify",
)
CONTAINER_NAME = "pgautodumper"
TASK_LOG_STREAM_PREFIX = "task"  # awslogs-stream-prefix, as in terraform/ecs.tf
STATE_MACHINE_NAME = "pgautodumper-backup"
ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


@dataclass
class LocalStack:
    """What :func:`provision` created: everything a run and its report need."""

    bucket: str
    secret_arn: str
    topic_arn: str
    queue_url: str
    state_machine_arn: str
    cluster_arn: str

    def request(self, name: str, **overrides: Any) -> dict[str, Any]:
        """The execution input, as a schedule sends it."""
        return {"name": name, "secret_arn": self.secret_arn, "bucket": self.bucket, **overrides}


def secret_from_url(database_url: str) -> dict[str, Any]:
    """An RDS-format secret from a ``postgresql://`` URL."""
    parts = urlsplit(database_url)
    return {
        "engine": "postgres",
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "username": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "dbname": unquote(parts.path.lstrip("/")) or "postgres",
    }


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "the local runtime runs the handler in-process\n")
    return buffer.getvalue()


def provision(
    emu: Emulator,
    database_url: str,
    *,
    lambda_environment: dict[str, str] | None = None,
    task_environment: dict[str, str] | None = None,
    image: str = LOCAL_IMAGE,
) -> LocalStack:
    """Create the resources; the environments extend the Lambdas' and the task definitions'.

    ``image`` is the task definitions' image: one the local registry lacks makes
    every task fail to start, as a wrong image URI does on Fargate.
    """
    suffix = secrets.token_hex(4)
    kms, s3, sm = emu.client("kms"), emu.client("s3"), emu.client("secretsmanager")
    sns, sqs, iam = emu.client("sns"), emu.client("sqs"), emu.client("iam")
    lam, ecs, ec2, sfn = (emu.client(s) for s in ("lambda", "ecs", "ec2", "stepfunctions"))

    key_id = kms.create_key(Description="pgautodumper local")["KeyMetadata"]["KeyId"]
    bucket = f"pgautodumper-local-{suffix}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key_id,
                    }
                }
            ]
        },
    )
    secret_arn = sm.create_secret(
        Name=f"pgautodumper/local-{suffix}", SecretString=json.dumps(secret_from_url(database_url))
    )["ARN"]
    topic_arn = sns.create_topic(Name=f"pgautodumper-{suffix}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"pgautodumper-notifications-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    role_arn = iam.create_role(
        RoleName=f"pgautodumper-{suffix}", AssumeRolePolicyDocument=ROLE_POLICY
    )["Role"]["Arn"]
    cluster_arn = ecs.create_cluster(clusterName=f"pgautodumper-{suffix}")["cluster"]["clusterArn"]
    task_log_group = f"/pgautodumper/{suffix}/task"
    emu.client("logs").create_log_group(logGroupName=task_log_group)
    # The same variables terraform/lambda.tf gives the functions.
    common = {
        "POWERTOOLS_SERVICE_NAME": "pgautodumper",
        "POWERTOOLS_METRICS_NAMESPACE": "pgautodumper",
        "PGAUTODUMPER_SIZE_ANOMALY_FRACTION": "0.5",
        "PGAUTODUMPER_SNS_TOPIC_ARN": topic_arn,
        "PGAUTODUMPER_TASK_LOG_GROUP": task_log_group,
        "PGAUTODUMPER_TASK_LOG_STREAM_PREFIX": f"{TASK_LOG_STREAM_PREFIX}/{CONTAINER_NAME}",
        "PGAUTODUMPER_CLUSTER_ARN": cluster_arn,
        **(lambda_environment or {}),
    }
    arns = {}
    for name in LAMBDAS:
        arns[f"{name}_function_arn"] = lam.create_function(
            FunctionName=f"pgautodumper-{name.replace('_', '-')}-{suffix}",
            Runtime="python3.12",
            Role=role_arn,
            Handler=f"lambdas.{name}.handler",
            Code={"ZipFile": _zip()},
            Timeout=300,
            Environment={"Variables": common},
        )["FunctionArn"]

    vpc_id = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName=f"pgautodumper-{suffix}", Description="pgautodumper task", VpcId=vpc_id
    )["GroupId"]
    task_definitions = {}
    for kind in ("backup", "verify"):
        task_definitions[f"{kind}_task_definition_arn"] = ecs.register_task_definition(
            family=f"pgautodumper-{kind}-{suffix}",
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="1024",
            memory="2048",
            containerDefinitions=[
                {
                    "name": CONTAINER_NAME,
                    "image": image,
                    "essential": True,
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {
                            "awslogs-group": task_log_group,
                            "awslogs-region": REGION,
                            "awslogs-stream-prefix": TASK_LOG_STREAM_PREFIX,
                        },
                    },
                    "environment": [
                        {"name": key, "value": value}
                        for key, value in (task_environment or {}).items()
                    ],
                }
            ],
        )["taskDefinition"]["taskDefinitionArn"]

    definition = render(
        {
            **arns,
            **task_definitions,
            "cluster_arn": cluster_arn,
            "container_name": CONTAINER_NAME,
            "subnet_ids": subnet,
            "security_group_ids": group,
            "assign_public_ip": "DISABLED",
        }
    )
    state_machine_arn = sfn.create_state_machine(
        name=STATE_MACHINE_NAME, definition=definition, roleArn=role_arn
    )["stateMachineArn"]
    return LocalStack(
        bucket=bucket,
        secret_arn=secret_arn,
        topic_arn=topic_arn,
        queue_url=queue_url,
        state_machine_arn=state_machine_arn,
        cluster_arn=cluster_arn,
    )


def notifications(emu: Emulator, queue_url: str) -> list[dict[str, Any]]:
    """Every notification the SQS subscriber captured: ``{"subject", "message"}``."""
    sqs = emu.client("sqs")
    found: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            envelope = json.loads(message["Body"])
            found.append({"subject": envelope.get("Subject"), "message": envelope.get("Message")})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
