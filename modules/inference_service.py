"""An OpenAI-compatible inference server (vLLM-style) on an ECS spot cluster, behind an Application Load Balancer.

What it creates (one construct):
- an ALB (internal unless ``internet_facing``) with its own security group, an HTTP (or HTTPS with a
  certificate) listener, and an ``ip`` target group health-checking the server's health path, with a
  deregistration delay that fits inside the two-minute spot notice;
- a task definition (``awsvpc``) for the server container: GPUs per task as a resource requirement,
  shared memory for tensor-parallel workers, a stop timeout, logs to a CloudWatch group with retention,
  model weights cached on EFS or on the instance (NVMe instance store when present, else the root volume);
- a service security group that admits only the ALB, on the container port;
- task and execution roles: the execution role may write only to this log group (and read only the
  named token secret / pull only from ECR when the image is there); the task role has nothing unless
  EFS with IAM authorization needs it;
- the ECS service with the cluster's capacity provider strategy (an on-demand base that keeps serving
  if every spot replica is lost, the rest spot, optional extra spot replicas), the deployment circuit
  breaker with rollback, AZ spread, and target tracking on ALB requests per target. The service is
  tagged ``spotkit:spot-overprovision`` (``spotkit.runtime.notice.TAG_SPOT_OVERPROVISION``) so that
  ``spotkit simulate`` can tell the wanted replicas from the spare ones.

Validation (before any resource): the deregistration delay (error above 120 s, warning above 90 s),
the on-demand base against the desired count, GPU count and ports, and autoscaling bounds. A warning
(``spot_only_risk``) when no on-demand replica is kept and nothing covers the spot replicas lost.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal, Mapping, Optional, Sequence

from constructs import Construct

from spotkit.constructs.annotations import warn
from spotkit.constructs.checks import require_at_least
from spotkit.constructs.ecs_spot import SPOT_NOTICE_SECONDS, EcsSpotCluster
from spotkit.constructs.iam import assume_role_policy
from spotkit.constructs.user_data import UserDataPart
from spotkit.errors import ValidationError
from spotkit.runtime.notice import TAG_SKIP_CHECK, TAG_SPOT_OVERPROVISION

DEREGISTRATION_WARN_SECONDS = 90
HOST_MODEL_CACHE = "/var/lib/spotkit/models"
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$")


@dataclass(frozen=True)
class InferenceContainer:
    """The inference server container (defaults: the vLLM OpenAI-compatible server).

    - ``image``: container image. Default ``vllm/vllm-openai:v0.8.5`` (pin a tag; ``latest`` moves under you).
    - ``model_id``: Hugging Face model id. Default ``deepseek-ai/DeepSeek-R1-Distill-Qwen-7B`` (fits one 24 GB GPU).
    - ``port``: the server's port. Default 8000.
    - ``gpus_per_task``: GPUs reserved per replica; also the tensor-parallel size of the default command. Default 1.
    - ``cpu`` / ``memory_mib``: task CPU units and memory; must fit the smallest instance type. Defaults 3072 / 12288.
    - ``shared_memory_mib``: ``/dev/shm`` size (NCCL and tensor-parallel workers need it). Default 8192.
    - ``environment``: extra environment variables.
    - ``command``: the full container command. Default: built from ``model_id``, ``port``, ``gpus_per_task``,
      the cache directory and ``extra_args`` (vLLM's ``--model ... --tensor-parallel-size ...``).
    - ``extra_args``: appended to the default command (``("--max-model-len", "16384")``).
    - ``health_check_path``: what the load balancer probes. Default ``/health``.
    - ``hf_token_secret_arn``: Secrets Manager secret or SSM parameter ARN passed as ``HF_TOKEN``
      (gated models). Default: none.
    - ``stop_timeout_seconds``: SIGTERM-to-SIGKILL wait, 2-120. Default 30.
    """

    image: str = "vllm/vllm-openai:v0.8.5"
    model_id: str = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
    port: int = 8000
    gpus_per_task: int = 1
    cpu: int = 3072
    memory_mib: int = 12288
    shared_memory_mib: int = 8192
    environment: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ("--max-model-len", "8192")
    health_check_path: str = "/health"
    hf_token_secret_arn: Optional[str] = None
    stop_timeout_seconds: int = 30


@dataclass(frozen=True)
class InferenceServiceSettings:
    """How the service is served and scaled. Defaults are spot-safe for the construct on its own, which
    has no on-demand fallback: one replica stays on on-demand. The ``gpu_inference`` stack, which adds
    the fallback, has other defaults (``spotkit.stacks.gpu_inference.default_service``: no on-demand base,
    weights 0:4, one spare spot replica).

    - ``container``: see ``InferenceContainer``.
    - ``desired_count``: replicas wanted: at creation, and the autoscaling floor, both plus
      ``spot_overprovision``. Default 2.
    - ``on_demand_base``: replicas always on on-demand; they keep answering when every spot replica is
      lost. 0 to 100 and at most ``desired_count``. Default 1. 0 gets a warning unless an on-demand
      fallback covers the spot group and ``spot_overprovision`` is 1 or more (``spot_only_risk``).
    - ``on_demand_weight`` / ``spot_weight``: split of replicas above the base. Defaults 1 and 4 (one in
      five extra replicas on on-demand). AWS documents that a weight-0 provider is not used to place
      tasks, so the provider holding the base keeps a weight of at least 1 (0 gets a warning).
    - ``spot_overprovision``: extra spot replicas on top of ``desired_count`` so that losing one spot
      replica still leaves the wanted capacity. Default 0.
    - ``max_count``: autoscaling ceiling. Default 6.
    - ``requests_per_target``: ALB requests per target per minute that autoscaling holds. Default 120.
    - ``internet_facing``: a public ALB (needs public subnets in 2 AZs). Default off: internal.
    - ``ingress_cidrs``: who may reach the ALB listener. Required (the stack passes the VPC range).
    - ``certificate_arn``: HTTPS on 443 with this ACM certificate. Default: HTTP on ``listener_port``.
    - ``listener_port``: HTTP listener port. Default 80.
    - ``idle_timeout_seconds``: ALB idle timeout; long generations without streaming need more. Default 300.
    - ``deregistration_delay_seconds``: how long the ALB lets in-flight requests finish after a target
      is deregistered; with the stop timeout it must fit the two-minute notice. Default 60; warning
      above 90, error above 120.
    - ``health_check_grace_period_seconds``: time to load the model before health checks count. Default 900.
    - ``model_cache``: ``instance`` (NVMe instance store when the type has one, else the root volume;
      lost with the instance) or ``efs`` (shared, survives reclaims; needs ``efs_file_system_id``). Default instance.
    - ``efs_file_system_id`` / ``efs_access_point_id``: an EFS cache you bring (allow NFS from
      ``service_security_group_id`` on its security group yourself). Default none: the construct's
      ``model_cache_file_system`` argument (an ``EfsCheckpoints``) is used instead, which the
      gpu_inference stack creates.
    - ``log_retention_days``: CloudWatch retention. Default 30.
    - ``circuit_breaker``: roll back a deployment whose tasks keep failing. Default on.
    """

    container: InferenceContainer = field(default_factory=InferenceContainer)
    desired_count: int = 2
    on_demand_base: int = 1
    on_demand_weight: int = 1
    spot_weight: int = 4
    spot_overprovision: int = 0
    max_count: int = 6
    requests_per_target: int = 120
    internet_facing: bool = False
    ingress_cidrs: tuple[str, ...] = ()
    certificate_arn: Optional[str] = None
    listener_port: int = 80
    idle_timeout_seconds: int = 300
    deregistration_delay_seconds: int = 60
    health_check_grace_period_seconds: int = 900
    model_cache: Literal["instance", "efs"] = "instance"
    efs_file_system_id: Optional[str] = None
    efs_access_point_id: Optional[str] = None
    log_retention_days: int = 30
    circuit_breaker: bool = True

    @property
    def total_count(self) -> int:
        return self.desired_count + self.spot_overprovision


def validate_service(name: str, s: InferenceServiceSettings, alb_subnet_ids: Sequence[str],
                     has_file_system: bool = False) -> None:
    where = f"InferenceService {name!r}"
    if not _NAME.match(name):
        raise ValidationError(
            f"{where}: name must be 2-24 lowercase letters, digits or hyphens, starting with a letter "
            "(it names the load balancer and target group, which allow 32 characters)"
        )
    _validate_replicas(where, s)
    _validate_container(where, s)
    _validate_model_cache(where, s, has_file_system)
    if not s.ingress_cidrs:
        raise ValidationError(
            f"{where}: ingress_cidrs is empty: nobody could reach the load balancer; give the client ranges "
            "(the VPC range for an internal ALB)")
    if s.log_retention_days not in LOG_RETENTION_DAYS:
        raise ValidationError(
            f"{where}: log_retention_days {s.log_retention_days} is not a CloudWatch retention: use one of "
            f"{', '.join(map(str, LOG_RETENTION_DAYS))}")
    if len(alb_subnet_ids) < 2:
        raise ValidationError(
            f"{where}: an Application Load Balancer needs subnets in at least 2 AZs (got {len(alb_subnet_ids)})"
            + ("; a public ALB needs public subnets: pass alb_subnet_ids" if s.internet_facing else ""))


def _validate_replicas(where: str, s: InferenceServiceSettings) -> None:
    """Draining within the spot notice, and the counts of replicas and their on-demand part."""
    if s.deregistration_delay_seconds > SPOT_NOTICE_SECONDS:
        raise ValidationError(
            f"{where}: deregistration_delay_seconds is {s.deregistration_delay_seconds}, above the "
            f"{SPOT_NOTICE_SECONDS}-second spot notice: requests would be cut when the instance dies; "
            f"use {DEREGISTRATION_WARN_SECONDS} or less"
        )
    if s.deregistration_delay_seconds < 0:
        raise ValidationError(f"{where}: deregistration_delay_seconds must be 0 or more")
    require_at_least(where, "desired_count", s.desired_count, 1)
    if s.on_demand_base > s.desired_count:
        raise ValidationError(
            f"{where}: on_demand_base ({s.on_demand_base}) is larger than desired_count ({s.desired_count}): "
            "the on-demand floor cannot exceed the replicas; raise desired_count or lower on_demand_base"
        )
    if s.on_demand_base < 0 or s.spot_overprovision < 0:
        raise ValidationError(f"{where}: on_demand_base and spot_overprovision must be 0 or more")
    if s.max_count < s.total_count:
        raise ValidationError(
            f"{where}: max_count ({s.max_count}) is below desired_count + spot_overprovision ({s.total_count}): "
            "raise max_count"
        )
    require_at_least(where, "requests_per_target", s.requests_per_target, 1)


def _validate_container(where: str, s: InferenceServiceSettings) -> None:
    c = s.container
    require_at_least(where, "container.gpus_per_task", c.gpus_per_task, 0)
    if not 1 <= c.port <= 65535 or not 1 <= s.listener_port <= 65535:
        raise ValidationError(f"{where}: container.port and listener_port must be between 1 and 65535")
    if not c.health_check_path.startswith("/"):
        raise ValidationError(f"{where}: container.health_check_path must start with / (got {c.health_check_path!r})")
    if not 2 <= c.stop_timeout_seconds <= SPOT_NOTICE_SECONDS:
        raise ValidationError(
            f"{where}: container.stop_timeout_seconds must be between 2 and {SPOT_NOTICE_SECONDS} (got {c.stop_timeout_seconds})")


def _validate_model_cache(where: str, s: InferenceServiceSettings, has_file_system: bool) -> None:
    if s.model_cache not in ("instance", "efs"):
        raise ValidationError(f"{where}: model_cache must be 'instance' or 'efs' (got {s.model_cache!r})")
    if s.model_cache == "efs" and not (s.efs_file_system_id or has_file_system):
        raise ValidationError(
            f"{where}: model_cache='efs' needs efs_file_system_id or a file system construct "
            "(model_cache_file_system): give one, or use model_cache='instance'")
    if s.efs_file_system_id and has_file_system:
        raise ValidationError(
            f"{where}: efs_file_system_id and model_cache_file_system both name the model cache: give one")


SPOT_ONLY_ACCEPTED = ("SPOT010: no on-demand base by design: a spare spot replica and the on-demand fallback "
                      "cover a reclaim (docs/simulate.md)")


def spot_only_risk(where: str, s: InferenceServiceSettings, on_demand_fallback: bool) -> Optional[str]:
    """The warning for a service with no on-demand replica (``on_demand_base`` 0) when nothing covers the
    spot replicas it loses, else ``None``.

    Risky, on the kept spot traces (``spotkit simulate``, docs/simulate.md; 2 replicas, 3 AZs):
    - no on-demand fallback: when spot is gone everywhere nothing answers until spot returns
      (availability 31-97% even with a spare replica, shortfalls up to 18 hours);
    - the fallback but no spare spot replica: every reclaim leaves fewer than ``desired_count`` until
      its replacement boots, and a second zone lost during a fallback is not covered (availability
      59-98%, shortfalls up to 18 hours).
    Not risky: the fallback and ``spot_overprovision`` 1 or more (98.2-99.4% over 2 or 3 AZs, against
    97.1-99.3% with one replica on on-demand and no spare).
    """
    if s.on_demand_base > 0:
        return None
    if not on_demand_fallback:
        return (f"{where}: on_demand_base=0 and no on-demand fallback: when spot capacity is reclaimed everywhere, "
                "nothing answers until spot returns; set on_demand_base 1 or more, or turn the fallback on "
                "(fallback.enabled) with spot_overprovision 1 or more")
    if s.spot_overprovision == 0:
        return (f"{where}: on_demand_base=0 with spot_overprovision=0: every spot reclaim leaves fewer than "
                "desired_count replicas answering until its replacement boots, spot or the fallback's on-demand; "
                "set spot_overprovision 1 or more, or on_demand_base 1 or more")
    return None


def default_command(c: InferenceContainer, cache_dir: str) -> list[str]:
    """vLLM ``api_server`` arguments (the image's entrypoint is the server)."""
    return ["--model", c.model_id, "--host", "0.0.0.0", "--port", str(c.port),
            "--tensor-parallel-size", str(max(c.gpus_per_task, 1)), "--download-dir", cache_dir, *c.extra_args]


INSTANCE_STORE_SCRIPT = f"""# Model cache on NVMe instance store when the type has one (g5/g6/g6e/p4d/p5), else on the root volume.
CACHE={HOST_MODEL_CACHE}
mkdir -p "$CACHE"
if ! mountpoint -q "$CACHE"; then
  DEVS=$(lsblk -dpno NAME,MODEL | awk '/Instance Storage/ {{print $1}}')
  if [ -n "$DEVS" ]; then
    DEV=$(echo "$DEVS" | head -n1)
    blkid "$DEV" >/dev/null 2>&1 || mkfs.xfs -q "$DEV"
    mount -o noatime "$DEV" "$CACHE" && echo "model cache on instance store $DEV"
  else
    echo "no instance store: model cache on the root volume"
  fi
fi
chmod 0777 "$CACHE"
"""


class InferenceService(Construct):
    """ALB + target group + ECS service for the inference server, on an ``EcsSpotCluster``.

    ``on_demand_fallback``: an on-demand fallback covers the spot provider's group (the stack's
    ``fallback``, ``spotkit.constructs.capacity_fallback``: on a spot capacity failure it launches on-demand into
    that group). It decides only the warning of ``spot_only_risk``. Default off.

    Capabilities:
    - ``service_security_group_id``: allow it on a peer (an EFS mount target, a database).
    - ``url``: the listener URL (the ALB DNS name).
    """

    def __init__(self, scope: Construct, id_: str, *, name: str, cluster: EcsSpotCluster, vpc_id: str,
                 task_subnet_ids: Sequence[str], alb_subnet_ids: Sequence[str],
                 settings: InferenceServiceSettings = InferenceServiceSettings(),
                 model_cache_file_system=None, on_demand_fallback: bool = False):
        validate_service(name, settings, alb_subnet_ids, has_file_system=model_cache_file_system is not None)
        where = f"InferenceService {name!r}"
        strategy = cluster.strategy(settings.on_demand_base, settings.on_demand_weight, settings.spot_weight,
                                    where=where)
        if settings.container.gpus_per_task > 0 and not cluster.settings.gpu:
            raise ValidationError(
                f"{where}: container.gpus_per_task is {settings.container.gpus_per_task} but the cluster has gpu off: "
                "no instance would advertise GPUs; turn gpu on in the cluster settings or set gpus_per_task=0")
        super().__init__(scope, id_)
        self.name = name
        self.settings = settings
        self.cluster = cluster
        # An EfsCheckpoints-like construct (file_system, access_point, allow_from, grant_mount) used when
        # model_cache='efs' and no efs_file_system_id is given.
        self.model_cache_file_system = model_cache_file_system if settings.model_cache == "efs" else None
        s = settings
        if s.deregistration_delay_seconds > DEREGISTRATION_WARN_SECONDS:
            warn(self, f"{where}: deregistration_delay_seconds={s.deregistration_delay_seconds} leaves under "
                       f"{SPOT_NOTICE_SECONDS - s.deregistration_delay_seconds} s of the spot notice to stop the task")
        if s.deregistration_delay_seconds + s.container.stop_timeout_seconds > SPOT_NOTICE_SECONDS:
            warn(self, f"{where}: deregistration delay + stop timeout = "
                       f"{s.deregistration_delay_seconds + s.container.stop_timeout_seconds} s, more than the "
                       f"{SPOT_NOTICE_SECONDS}-second notice: the server may be killed mid-shutdown")
        if s.on_demand_base > 0 and s.on_demand_weight == 0:
            warn(self, f"{where}: on_demand_weight=0 with on_demand_base={s.on_demand_base}: AWS documents that a "
                       "provider of weight 0 is not used to place tasks, so the on-demand base may stay unplaced; "
                       "give on_demand_weight 1 or more")
        risk = spot_only_risk(where, s, on_demand_fallback)
        if risk:
            warn(self, risk)
        # No on-demand replica, but a spare spot replica and the fallback cover a reclaim: the trade-off is
        # deliberate, so SPOT010 ("no on-demand base") is suppressed on the service with the reason.
        self._spot_only_accepted = s.on_demand_base == 0 and risk is None
        if s.internet_facing and "0.0.0.0/0" in s.ingress_cidrs:
            warn(self, f"{where}: a public ALB open to 0.0.0.0/0 exposes an unauthenticated model server; "
                       "restrict ingress_cidrs or put authentication in front")

        self._create_log_group()
        self._create_security_groups(vpc_id)
        self._create_load_balancer(vpc_id, alb_subnet_ids)
        self._create_roles()
        self._create_task_definition()
        self._create_service(task_subnet_ids, strategy)
        self._create_autoscaling()

    # --- resources --------------------------------------------------------------------------

    def _create_log_group(self) -> None:
        from cdktn_aws.cloudwatch_logs import AwsGroup as CloudwatchLogGroup

        self.log_group = CloudwatchLogGroup(self, "logs", name=f"/spotkit/{self.name}",
                                            retention_in_days=self.settings.log_retention_days)

    def _create_security_groups(self, vpc_id: str) -> None:
        from cdktn_aws.vpc import (
            AwsSecurityGroup as SecurityGroup,
            AwsSecurityGroupEgressRule as VpcSecurityGroupEgressRule,
            AwsSecurityGroupIngressRule as VpcSecurityGroupIngressRule,
        )

        s = self.settings
        port = s.container.port
        listener_port = 443 if s.certificate_arn else s.listener_port
        self.alb_security_group = SecurityGroup(
            self, "alb-sg", name_prefix=f"{self.name}-alb-", vpc_id=vpc_id,
            description=f"spotkit {self.name} load balancer: listener from ingress_cidrs, out to the service only",
        )
        self.service_security_group = SecurityGroup(
            self, "service-sg", name_prefix=f"{self.name}-svc-", vpc_id=vpc_id,
            description=f"spotkit {self.name} inference tasks: admits only the load balancer",
        )
        for i, cidr in enumerate(s.ingress_cidrs):
            VpcSecurityGroupIngressRule(self, f"alb-in-{i}", security_group_id=self.alb_security_group.id,
                                        cidr_ipv4=cidr, ip_protocol="tcp", from_port=listener_port,
                                        to_port=listener_port, description="clients to the listener")
        VpcSecurityGroupEgressRule(self, "alb-out", security_group_id=self.alb_security_group.id,
                                   referenced_security_group_id=self.service_security_group.id, ip_protocol="tcp",
                                   from_port=port, to_port=port, description="to inference tasks")
        VpcSecurityGroupIngressRule(self, "service-in", security_group_id=self.service_security_group.id,
                                    referenced_security_group_id=self.alb_security_group.id, ip_protocol="tcp",
                                    from_port=port, to_port=port, description="from the load balancer only")
        VpcSecurityGroupEgressRule(self, "service-out", security_group_id=self.service_security_group.id,
                                   cidr_ipv4="0.0.0.0/0", ip_protocol="-1",
                                   description="model downloads (Hugging Face), ECR, CloudWatch")
        self.service_security_group_id = self.service_security_group.id

    def _create_load_balancer(self, vpc_id: str, alb_subnet_ids: Sequence[str]) -> None:
        from cdktn_aws.elb import AwsLb as Lb, AwsListener as LbListener, AwsTargetGroup as LbTargetGroup

        s = self.settings
        self.alb = Lb(
            self, "alb", name=f"{self.name}-alb", internal=not s.internet_facing, load_balancer_type="application",
            security_groups=[self.alb_security_group.id], subnets=list(alb_subnet_ids),
            idle_timeout=s.idle_timeout_seconds, drop_invalid_header_fields=True,
        )
        self.target_group = LbTargetGroup(
            self, "target-group", name=f"{self.name}-tg", vpc_id=vpc_id, target_type="ip", protocol="HTTP",
            port=s.container.port, deregistration_delay=str(s.deregistration_delay_seconds),
            health_check=LbTargetGroup.HealthCheckProperty(
                enabled=True, path=s.container.health_check_path, protocol="HTTP", port="traffic-port",
                matcher="200", interval=15, timeout=5, healthy_threshold=2, unhealthy_threshold=3,
            ),
        )
        forward = [LbListener.DefaultActionProperty(type="forward", target_group_arn=self.target_group.arn)]
        if s.certificate_arn:
            self.listener = LbListener(self, "listener", load_balancer_arn=self.alb.arn, port=443, protocol="HTTPS",
                                       certificate_arn=s.certificate_arn,
                                       ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06", default_action=forward)
            self.url = f"https://{self.alb.dns_name}"
        else:
            self.listener = LbListener(self, "listener", load_balancer_arn=self.alb.arn, port=s.listener_port,
                                       protocol="HTTP", default_action=forward)
            self.url = f"http://{self.alb.dns_name}:{s.listener_port}"

    def _create_roles(self) -> None:
        from cdktn_aws.sts import DataAwsCallerIdentity
        from cdktn_aws.iam import AwsRole as IamRole, AwsRolePolicy as IamRolePolicy

        s = self.settings
        me = DataAwsCallerIdentity(self, "caller")
        assume = assume_role_policy("ecs-tasks.amazonaws.com",
                                    condition={"StringEquals": {"aws:SourceAccount": me.account_id}})
        self.execution_role = IamRole(self, "execution-role", name_prefix=f"{self.name}-exec-", assume_role_policy=assume)
        statements: list[dict] = [{
            "Sid": "WriteOwnLogs", "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{self.log_group.arn}:*",
        }]
        image = s.container.image
        if ".dkr.ecr." in image:
            repo = image.split("/", 1)[1].split(":", 1)[0].split("@", 1)[0]
            statements += [
                {"Sid": "EcrToken", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
                {"Sid": "PullImage", "Effect": "Allow",
                 "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                 "Resource": f"arn:aws:ecr:*:*:repository/{repo}"},
            ]
        secret = s.container.hf_token_secret_arn
        if secret:
            action = "ssm:GetParameters" if ":ssm:" in secret else "secretsmanager:GetSecretValue"
            statements.append({"Sid": "ReadHfToken", "Effect": "Allow", "Action": action, "Resource": secret})
        IamRolePolicy(self, "execution-policy", name="spotkit-execution", role=self.execution_role.id,
                      policy=json.dumps({"Version": "2012-10-17", "Statement": statements}))
        self.execution_policy_statements = statements

        self.task_role = IamRole(self, "task-role", name_prefix=f"{self.name}-task-", assume_role_policy=assume)
        self.task_policy_statements: list[dict] = []
        efs = self.model_cache_file_system
        if efs is not None:
            # The file system construct owns the audited wiring: NFS from the tasks, mount via its access point.
            efs.allow_from(self.service_security_group.id, description=f"NFS from {self.name} inference tasks")
            efs.grant_mount(self.task_role)
        elif s.model_cache == "efs":
            self.task_policy_statements.append({
                "Sid": "MountModelCache", "Effect": "Allow",
                "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
                "Resource": f"arn:aws:elasticfilesystem:*:*:file-system/{s.efs_file_system_id}",
            })
            IamRolePolicy(self, "task-policy", name="spotkit-task", role=self.task_role.id,
                          policy=json.dumps({"Version": "2012-10-17", "Statement": self.task_policy_statements}))

    def _container_definition(self, cache_dir: str) -> dict:
        s = self.settings
        c = s.container
        env = {"HF_HOME": cache_dir, "HF_HUB_ENABLE_HF_TRANSFER": "0", **dict(c.environment)}
        definition: dict = {
            "name": "server",
            "image": c.image,
            "essential": True,
            "command": list(c.command) or default_command(c, cache_dir),
            "portMappings": [{"containerPort": c.port, "protocol": "tcp"}],
            "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
            "linuxParameters": {"sharedMemorySize": c.shared_memory_mib, "initProcessEnabled": True},
            "mountPoints": [{"sourceVolume": "model-cache", "containerPath": cache_dir, "readOnly": False}],
            "stopTimeout": c.stop_timeout_seconds,
            "ulimits": [{"name": "memlock", "softLimit": -1, "hardLimit": -1},
                        {"name": "nofile", "softLimit": 65535, "hardLimit": 65535}],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {"awslogs-group": self.log_group.name, "awslogs-region": _region(self),
                            "awslogs-stream-prefix": self.name},
            },
        }
        if c.gpus_per_task > 0:
            definition["resourceRequirements"] = [{"type": "GPU", "value": str(c.gpus_per_task)}]
        if c.hf_token_secret_arn:
            definition["secrets"] = [{"name": "HF_TOKEN", "valueFrom": c.hf_token_secret_arn}]
        return definition

    def _create_task_definition(self) -> None:
        from cdktn_aws.ecs import AwsTaskDefinition as EcsTaskDefinition

        s = self.settings
        cache_dir = "/models"
        if s.model_cache == "efs":
            efs = self.model_cache_file_system
            fs_id = efs.file_system.id if efs is not None else s.efs_file_system_id
            ap_id = efs.access_point.id if efs is not None else s.efs_access_point_id
            volume = EcsTaskDefinition.VolumeProperty(
                name="model-cache",
                efs_volume_configuration=EcsTaskDefinition.EfsVolumeConfigurationProperty(
                    file_system_id=fs_id, transit_encryption="ENABLED",
                    authorization_config=EcsTaskDefinition.VolumeEfsVolumeConfigurationAuthorizationConfigProperty(access_point_id=ap_id, iam="ENABLED") if ap_id else None,
                    root_directory=None if ap_id else "/",
                ),
            )
        else:
            volume = EcsTaskDefinition.VolumeProperty(name="model-cache", host_path=HOST_MODEL_CACHE)
            self.cluster.add_user_data(UserDataPart("model-cache", INSTANCE_STORE_SCRIPT, order=20))
        self.container_definition = self._container_definition(cache_dir)
        self.task_definition = EcsTaskDefinition(
            self, "task", family=self.name, network_mode="awsvpc", requires_compatibilities=["EC2"],
            cpu=str(s.container.cpu), memory=str(s.container.memory_mib),
            execution_role_arn=self.execution_role.arn, task_role_arn=self.task_role.arn,
            container_definitions=json.dumps([self.container_definition]), volume=[volume],
        )

    def _create_service(self, task_subnet_ids: Sequence[str], strategy: list) -> None:
        from cdktn import TerraformResourceLifecycle
        from cdktn_aws.ecs import AwsService as EcsService

        s = self.settings
        self.service = EcsService(
            self, "service", name=self.name, cluster=self.cluster.cluster_arn,
            task_definition=self.task_definition.arn, desired_count=s.total_count,
            capacity_provider_strategy=strategy,
            network_configuration=EcsService.NetworkConfigurationProperty(
                subnets=list(task_subnet_ids), security_groups=[self.service_security_group.id], assign_public_ip=False),
            load_balancer=[EcsService.LoadBalancerProperty(target_group_arn=self.target_group.arn, container_name="server",
                                                  container_port=s.container.port)],
            health_check_grace_period_seconds=s.health_check_grace_period_seconds,
            deployment_circuit_breaker=EcsService.DeploymentCircuitBreakerProperty(enable=s.circuit_breaker,
                                                                          rollback=s.circuit_breaker),
            deployment_minimum_healthy_percent=100, deployment_maximum_percent=200,
            ordered_placement_strategy=[EcsService.OrderedPlacementStrategyProperty(type="spread", field="attribute:ecs.availability-zone"),
                                        EcsService.OrderedPlacementStrategyProperty(type="spread", field="instanceId")],
            enable_ecs_managed_tags=True, propagate_tags="SERVICE", wait_for_steady_state=False,
            tags={TAG_SPOT_OVERPROVISION: str(s.spot_overprovision),
                  **({TAG_SKIP_CHECK: SPOT_ONLY_ACCEPTED} if self._spot_only_accepted else {})},
            depends_on=[self.listener, self.cluster.capacity_providers],
            lifecycle=TerraformResourceLifecycle(ignore_changes=["desired_count"]),
        )

    def _create_autoscaling(self) -> None:
        from cdktn_aws.application_auto_scaling import (
            AwsPolicy as AppautoscalingPolicy,
            AwsTarget as AppautoscalingTarget,
        )

        s = self.settings
        self.scaling_target = AppautoscalingTarget(
            self, "scaling-target", service_namespace="ecs", scalable_dimension="ecs:service:DesiredCount",
            resource_id=f"service/{self.cluster.cluster_name}/{self.service.name}",
            min_capacity=s.total_count, max_capacity=s.max_count,
        )
        self.scaling_policy = AppautoscalingPolicy(
            self, "scaling-policy", name=f"{self.name}-requests-per-target", policy_type="TargetTrackingScaling",
            service_namespace=self.scaling_target.service_namespace,
            scalable_dimension=self.scaling_target.scalable_dimension, resource_id=self.scaling_target.resource_id,
            target_tracking_scaling_policy_configuration=AppautoscalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
                target_value=s.requests_per_target, scale_in_cooldown=300, scale_out_cooldown=60,
                predefined_metric_specification=AppautoscalingPolicy.PredefinedMetricSpecificationProperty(
                    predefined_metric_type="ALBRequestCountPerTarget",
                    resource_label=f"{self.alb.arn_suffix}/{self.target_group.arn_suffix}",
                ),
            ),
        )


def _region(scope: Construct) -> str:
    from cdktn import TerraformStack

    return getattr(TerraformStack.of(scope), "region", None) or "us-east-1"
