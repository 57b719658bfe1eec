"""A small VPC for spot fleets: one private subnet per AZ (2+), a public subnet with one NAT gateway,
and a free S3 gateway endpoint. Bring your own subnets instead by passing them to the stack."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cdktn import Fn
from constructs import Construct

from spotkit.errors import ValidationError
from spotkit.runtime.notice import TAG_TIER


@dataclass(frozen=True)
class NetworkSettings:
    """Network of a stack.

    - ``vpc_id`` + ``subnet_ids``: bring your own (both or neither). Default: create a VPC.
    - ``cidr``: the created VPC's range. Default 10.42.0.0/16.
    - ``az_count``: private subnets, one per AZ, 2 or more. Default 2.
    - ``availability_zones``: explicit AZ names. Default: the first ``az_count`` available in the region.
    - ``nat_gateway``: one NAT gateway so private instances reach package mirrors and AWS APIs. Default on.
    - ``public_subnet_count``: public subnets (one per AZ, with ``nat_gateway``); 2 or more for a public
      load balancer. Default 1 (the NAT gateway's).
    """

    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    cidr: str = "10.42.0.0/16"
    az_count: int = 2
    availability_zones: tuple[str, ...] = ()
    nat_gateway: bool = True
    public_subnet_count: int = 1

    @property
    def bring_your_own(self) -> bool:
        return bool(self.vpc_id or self.subnet_ids)


def validate_network(settings: NetworkSettings) -> None:
    if bool(settings.vpc_id) != bool(settings.subnet_ids):
        raise ValidationError(
            "network: vpc_id and subnet_ids go together: give both to bring your own network, or neither to create one"
        )
    if settings.bring_your_own:
        return
    try:
        net = ipaddress.ip_network(settings.cidr)
    except ValueError as exc:
        raise ValidationError(f"network.cidr {settings.cidr!r} is not a CIDR block (e.g. 10.42.0.0/16)") from exc
    if not 16 <= net.prefixlen <= 22:
        raise ValidationError(f"network.cidr {settings.cidr!r}: use a prefix between /16 and /22")
    count = len(settings.availability_zones) or settings.az_count
    if count < 2:
        raise ValidationError(
            f"network.az_count must be 2 or more (got {count}): spot capacity is reclaimed per AZ, so one AZ can take the whole fleet"
        )
    if not 1 <= settings.public_subnet_count <= count:
        raise ValidationError(
            f"network.public_subnet_count must be between 1 and the AZ count {count} (got {settings.public_subnet_count})"
        )


class SpotNetwork(Construct):
    """The created VPC. ``private_subnet_ids`` feed compute groups, ``vpc_id`` their security groups."""

    def __init__(self, scope: Construct, id_: str, *, name: str, region: str,
                 settings: NetworkSettings = NetworkSettings()):
        validate_network(settings)
        super().__init__(scope, id_)
        from cdktn_aws.vpc import AwsEndpoint as VpcEndpoint, AwsRouteTable as RouteTable, AwsVpc as Vpc

        self.name = name
        net = ipaddress.ip_network(settings.cidr)
        blocks = list(net.subnets(new_prefix=min(net.prefixlen + 4, 28)))
        count = len(settings.availability_zones) or settings.az_count
        azs = self._availability_zones(settings, count)
        self.vpc = Vpc(self, "vpc", cidr_block=settings.cidr, enable_dns_hostnames=True, enable_dns_support=True,
                       tags={"Name": name})
        self.vpc_id = self.vpc.id
        self.az_count = count
        private_rt = RouteTable(self, "private-rt", vpc_id=self.vpc.id, tags={"Name": f"{name}-private"})
        self.private_subnets = [self._subnet("private", i, blocks[i], azs[i], private_rt) for i in range(count)]
        self.private_subnet_ids = [s.id for s in self.private_subnets]

        VpcEndpoint(self, "s3-endpoint", vpc_id=self.vpc.id, service_name=f"com.amazonaws.{region}.s3",
                    vpc_endpoint_type="Gateway", route_table_ids=[private_rt.id])
        self.public_subnet_ids = []
        if settings.nat_gateway:
            self._create_nat_gateway(settings.public_subnet_count, blocks, azs, private_rt)

    # --- resources --------------------------------------------------------------------------

    def _availability_zones(self, settings: NetworkSettings, count: int) -> list:
        """The AZs given, else the first ``count`` available ones (resolved by Terraform)."""
        if settings.availability_zones:
            return list(settings.availability_zones)
        from cdktn_aws.ec2 import DataAwsAvailabilityZones

        data = DataAwsAvailabilityZones(self, "azs", state="available")
        return [Fn.element(data.names, i) for i in range(count)]

    def _subnet(self, tier: str, i: int, block, az, route_table):
        """Subnet ``<tier>-<i>`` associated with ``route_table``."""
        from cdktn_aws.vpc import AwsRouteTableAssociation as RouteTableAssociation, AwsSubnet as Subnet

        public = dict(map_public_ip_on_launch=False) if tier == "public" else {}
        subnet = Subnet(self, f"{tier}-{i}", vpc_id=self.vpc.id, cidr_block=str(block), availability_zone=az,
                        tags={"Name": f"{self.name}-{tier}-{i}", TAG_TIER: tier}, **public)
        RouteTableAssociation(self, f"{tier}-rta-{i}", subnet_id=subnet.id, route_table_id=route_table.id)
        return subnet

    def _create_nat_gateway(self, public_count: int, blocks: list, azs: list, private_rt) -> None:
        """Public subnets (from the top of the range) behind an internet gateway, and one NAT gateway in the
        first of them as the private subnets' default route."""
        from cdktn_aws.ec2 import AwsEip as Eip
        from cdktn_aws.vpc import (
            AwsInternetGateway as InternetGateway,
            AwsNatGateway as NatGateway,
            AwsRoute as Route,
            AwsRouteTable as RouteTable,
        )

        name = self.name
        igw = InternetGateway(self, "igw", vpc_id=self.vpc.id, tags={"Name": name})
        public_rt = RouteTable(self, "public-rt", vpc_id=self.vpc.id, tags={"Name": f"{name}-public"})
        Route(self, "public-default", route_table_id=public_rt.id, destination_cidr_block="0.0.0.0/0",
              gateway_id=igw.id)
        publics = [self._subnet("public", i, blocks[-1 - i], azs[i], public_rt) for i in range(public_count)]
        eip = Eip(self, "nat-eip", domain="vpc", tags={"Name": f"{name}-nat"})
        nat = NatGateway(self, "nat", allocation_id=eip.id, subnet_id=publics[0].id, tags={"Name": name},
                         depends_on=[igw])
        Route(self, "private-default", route_table_id=private_rt.id, destination_cidr_block="0.0.0.0/0",
              nat_gateway_id=nat.id)
        self.public_subnet_ids = [p.id for p in publics]
