"""The web cluster (``WebTier=cluster``): an Application Load Balancer in two zones, its target
group, listeners, the launch template and the Auto Scaling group deploy into moto with the
properties the product needs; ``plan`` shows what going from one host to the cluster changes; the
CLI picks the load balancer's subnets and refuses a cluster without a shared database.

moto 5.2.5 creates the load balancer, target group, listeners (and their default rules), launch
template, Auto Scaling group (and its instances), the SNS topic and the RDS instance's Multi-AZ
flag. It drops the load balancer's and the target group's attributes (idle timeout, stickiness,
deregistration delay), the group's creation and update policies, and skips the CloudWatch
alarms: those are read from the template here, and checked against AWS's specification by
cfn-lint (``test_cloudformation.py``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from cfnlint.decode.cfn_yaml import loads

from infra_scripts import __main__ as cli
from infra_scripts import cloudformation as cfn
from labelkit import aws
from tests.infra.conftest import MOTO_AMI, REGION, Echo, no_sleep
from tests.infra.test_cloudformation import ACCOUNT, _statements, _tag

pytestmark = [
    pytest.mark.aws,
    pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto"),
]

Opts = Callable[..., cfn.DeployOptions]


def _client(service: str) -> Any:
    return aws.client(service, region=REGION)


def _template() -> Any:
    return loads(cfn.TEMPLATE.read_text(encoding="utf-8"))


def _groups() -> dict[str, dict[str, Any]]:
    found = _client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:labelkit:stack", "Values": ["labelkit-demo"]}]
    )["SecurityGroups"]
    return {_tag(g, "Name"): g for g in found}


def _ingress(group: dict[str, Any]) -> set[tuple[int, str]]:
    """(port, source) of each rule: a CIDR or a security group id."""
    rules = set()
    for p in group["IpPermissions"]:
        rules |= {(p["FromPort"], r["CidrIp"]) for r in p.get("IpRanges", [])}
        rules |= {(p["FromPort"], g["GroupId"]) for g in p.get("UserIdGroupPairs", [])}
    return rules


def _default_subnets() -> list[dict[str, Any]]:
    subnets = _client("ec2").describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    return sorted(subnets["Subnets"], key=lambda s: s["AvailabilityZone"])


def test_the_cluster_deploys_into_moto_behind_an_https_load_balancer(
    clients: cfn.Clients, make_opts: Opts
) -> None:
    # GIVEN a certificate in ACM, the production profile and an address for the alarms
    arn = _client("acm").request_certificate(DomainName="labelkit.example.com")["CertificateArn"]
    opts = make_opts(
        WebTier="cluster", Profile="production", CertificateArn=arn, AlarmEmail="ops@example.com"
    )
    echo = Echo()

    # WHEN the cluster is applied with no subnets named
    cs, out = cfn.apply(opts, clients, echo=echo, sleep=no_sleep)

    # THEN the CLI put the load balancer in the default VPC's public subnets of the first two zones
    zones = _default_subnets()
    picked = [zones[0]["SubnetId"], zones[1]["SubnetId"]]
    assert f"WebTier=cluster: the load balancer and the hosts go in {', '.join(picked)}" in echo.text
    types = {c["ResourceType"] for c in cs.changes}
    assert {"AWS::ElasticLoadBalancingV2::LoadBalancer", "AWS::AutoScaling::AutoScalingGroup"} <= types
    assert {"AWS::EC2::LaunchTemplate", "AWS::CloudWatch::Alarm", "AWS::SNS::Topic"} <= types

    # AND the load balancer faces the internet in two zones, behind its own security group
    elb = _client("elbv2")
    (lb,) = elb.describe_load_balancers()["LoadBalancers"]
    assert lb["LoadBalancerName"] == "labelkit-demo" and lb["Scheme"] == "internet-facing"
    assert lb["Type"] == "application"
    assert sorted(z["SubnetId"] for z in lb["AvailabilityZones"]) == sorted(picked)
    assert len({z["ZoneName"] for z in lb["AvailabilityZones"]}) == 2
    groups = _groups()
    assert sorted(groups) == [
        "labelkit-demo-app",
        "labelkit-demo-db",
        "labelkit-demo-lb",
        "labelkit-demo-web",
    ]
    lb_group, web_group = groups["labelkit-demo-lb"]["GroupId"], groups["labelkit-demo-web"]["GroupId"]
    assert lb["SecurityGroups"] == [lb_group]
    assert _ingress(groups["labelkit-demo-lb"]) == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}
    # the hosts take port 80 from the load balancer only, and no SSH (SshCidr is empty by default)
    assert _ingress(groups["labelkit-demo-web"]) == {(80, lb_group)}

    # AND the target group checks Streamlit's health through nginx, in the load balancer's VPC
    (tg,) = elb.describe_target_groups()["TargetGroups"]
    assert (tg["Protocol"], tg["Port"], tg["TargetType"]) == ("HTTP", 80, "instance")
    assert (tg["HealthCheckPath"], tg["HealthCheckProtocol"], tg["Matcher"]) == (
        "/_stcore/health",
        "HTTP",
        {"HttpCode": "200"},
    )
    assert (tg["HealthCheckIntervalSeconds"], tg["HealthyThresholdCount"], tg["UnhealthyThresholdCount"]) == (
        10,
        2,
        2,
    )
    assert tg["VpcId"] == lb["VpcId"] and tg["LoadBalancerArns"] == [lb["LoadBalancerArn"]]

    # AND HTTP is redirected to HTTPS, which ends TLS with the certificate and forwards to the hosts
    listeners = {
        listener["Port"]: listener
        for listener in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    }
    assert sorted(listeners) == [80, 443]
    (redirect,) = listeners[80]["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS" and redirect["RedirectConfig"]["Port"] == "443"
    assert redirect["RedirectConfig"]["StatusCode"] == "HTTP_301"
    https = listeners[443]
    assert https["Protocol"] == "HTTPS" and https["Certificates"] == [{"CertificateArn": arn}]
    assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    # the listeners' rules: each has only its default rule, the one above
    for port, kind in ((80, "redirect"), (443, "forward")):
        (rule,) = elb.describe_rules(ListenerArn=listeners[port]["ListenerArn"])["Rules"]
        assert rule["IsDefault"] and [a["Type"] for a in rule["Actions"]] == [kind]
    (forward,) = elb.describe_rules(ListenerArn=listeners[443]["ListenerArn"])["Rules"][0]["Actions"]
    assert forward["TargetGroupArn"] == tg["TargetGroupArn"]

    # AND two hosts run from the launch template in an Auto Scaling group replaced by the
    # load balancer's health check
    (group,) = _client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    assert group["AutoScalingGroupName"] == "labelkit-demo-web" == out["auto_scaling_group"]
    assert (group["MinSize"], group["DesiredCapacity"], group["MaxSize"]) == (2, 2, 2)
    assert group["TargetGroupARNs"] == [tg["TargetGroupArn"]]
    assert (group["HealthCheckType"], group["HealthCheckGracePeriod"]) == ("ELB", 900)
    assert sorted(group["VPCZoneIdentifier"].split(",")) == sorted(picked)
    assert [i["LifecycleState"] for i in group["Instances"]] == ["InService", "InService"]
    assert {t["Key"]: t["PropagateAtLaunch"] for t in group["Tags"]} == {"Name": True, "labelkit:stack": True}
    template_id = group["LaunchTemplate"]["LaunchTemplateId"]
    (version,) = _client("ec2").describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=[group["LaunchTemplate"]["Version"]]
    )["LaunchTemplateVersions"]
    data = version["LaunchTemplateData"]
    assert version["LaunchTemplateName"] == "labelkit-demo-web"
    assert (data["ImageId"], data["InstanceType"]) == (MOTO_AMI, "t3.small")
    assert data["IamInstanceProfile"]["Arn"].endswith(":instance-profile/labelkit-demo-ec2")
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    (nic,) = data["NetworkInterfaces"]
    assert nic["AssociatePublicIpAddress"] is True  # outbound only: the group admits the load balancer
    assert sorted(nic["Groups"]) == sorted([web_group, groups["labelkit-demo-app"]["GroupId"]])
    user_data = base64.b64decode(data["UserData"]).decode()
    assert "--load-balancer --load-balancer-idle-timeout 300" in user_data
    assert f"--target-group-arn '{tg['TargetGroupArn']}'" in user_data
    assert "--logical-resource-id WebHosts" in user_data
    assert f"LABELKIT_QUEUE_URL={out['queue_url']}" in user_data
    assert f"LABELKIT_DATABASE_URL={out['database_url']}" in user_data

    # AND no single host; the outputs give the load balancer's name and the site's HTTPS URL
    assert out["instance_id"] == "" and out["public_dns"] == ""
    assert out["load_balancer_dns"] == lb["DNSName"]
    assert out["site_url"] == f"https://{lb['DNSName']}"
    assert f"Site: https://{lb['DNSName']}" in echo.lines

    # AND the production profile gives RDS a standby in a second zone
    (db,) = _client("rds").describe_db_instances()["DBInstances"]
    assert db["MultiAZ"] is True

    # AND the hosts may signal this stack only, and read target health
    host = _statements("labelkit-demo-ec2")
    assert host["SignalReady"]["Action"] == ["cloudformation:SignalResource"]
    assert host["SignalReady"]["Resource"] == [
        f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/labelkit-demo/*"
    ]
    assert host["TargetHealth"]["Action"] == ["elasticloadbalancing:DescribeTargetHealth"]

    # AND the alarms go to the address given
    sns = _client("sns")
    (topic,) = sns.list_topics()["Topics"]
    assert topic["TopicArn"].endswith(":labelkit-demo-alarms")
    subs = sns.list_subscriptions_by_topic(TopicArn=topic["TopicArn"])["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("email", "ops@example.com")]


def test_the_cluster_without_a_certificate_serves_http_and_hosts_can_sit_in_their_own_subnets(
    clients: cfn.Clients, make_opts: Opts
) -> None:
    # GIVEN the load balancer in two subnets, the hosts in a third and fourth, SSH from one address
    subnets = [s["SubnetId"] for s in _default_subnets()]
    opts = make_opts(
        WebTier="cluster",
        LoadBalancerSubnetIds=",".join(subnets[:2]),
        HostSubnetIds=",".join(subnets[2:4]),
        HostsMin="2",
        HostsDesired="3",
        HostsMax="4",
        SshCidr="203.0.113.4/32",
    )
    # WHEN applied
    echo = Echo()
    _, out = cfn.apply(opts, clients, echo=echo, sleep=no_sleep)
    # THEN the subnets given are used (the CLI picked none) and port 80 serves the site itself
    assert "WebTier=cluster:" not in echo.text
    elb = _client("elbv2")
    (lb,) = elb.describe_load_balancers()["LoadBalancers"]
    assert sorted(z["SubnetId"] for z in lb["AvailabilityZones"]) == sorted(subnets[:2])
    (listener,) = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    (tg,) = elb.describe_target_groups()["TargetGroups"]
    assert (listener["Port"], listener["Protocol"]) == (80, "HTTP")
    assert listener["DefaultActions"] == [{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}]
    assert out["site_url"] == f"http://{lb['DNSName']}"
    # AND the hosts are in their own subnets, without public IPs, three of them
    (group,) = _client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    assert sorted(group["VPCZoneIdentifier"].split(",")) == sorted(subnets[2:4])
    assert (group["MinSize"], group["DesiredCapacity"], group["MaxSize"]) == (2, 3, 4)
    assert len(group["Instances"]) == 3
    (version,) = _client("ec2").describe_launch_template_versions(
        LaunchTemplateId=group["LaunchTemplate"]["LaunchTemplateId"], Versions=["$Latest"]
    )["LaunchTemplateVersions"]
    assert version["LaunchTemplateData"]["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is False
    # AND SSH is open to the address given, besides the load balancer's port 80
    groups = _groups()
    assert _ingress(groups["labelkit-demo-web"]) == {
        (80, groups["labelkit-demo-lb"]["GroupId"]),
        (22, "203.0.113.4/32"),
    }
    # AND the demo profile keeps RDS in one zone, and no alarm topic is made without an address
    assert _client("rds").describe_db_instances()["DBInstances"][0]["MultiAZ"] is False
    assert _client("sns").list_topics()["Topics"] == []


def test_plan_shows_the_change_from_one_host_to_the_cluster(
    clients: cfn.Clients, make_opts: Opts, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a stack with the single host (the default)
    single = make_opts()
    cfn.apply(single, clients, echo=Echo(), sleep=no_sleep)
    host_before = cfn.describe_stack(single, clients)
    assert host_before is not None
    # WHEN the cluster is planned from the command line
    args = ["plan", "--stack", "demo", "--region", REGION, "--outputs-dir", str(single.outputs_dir)]
    args += ["--web-tier", "cluster", "--profile", "production", "--ami", MOTO_AMI]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    # THEN the change set adds the load balancer, its listener, the launch template, the group and
    # the load balancer's alarms, removes the single host, and modifies what the cluster changes
    assert "Change set to update stack labelkit-demo in us-east-1:" in printed
    lines = [line.split() for line in printed.splitlines() if line.startswith("  ")]
    by_action = {(a, t, n) for a, t, n in ((w[1], w[2], w[3]) for w in lines if len(w) == 4)}
    assert {
        ("add", "AWS::EC2::SecurityGroup", "LoadBalancerSecurityGroup"),
        ("add", "AWS::ElasticLoadBalancingV2::LoadBalancer", "LoadBalancer"),
        ("add", "AWS::ElasticLoadBalancingV2::TargetGroup", "TargetGroup"),
        ("add", "AWS::ElasticLoadBalancingV2::Listener", "HttpListener"),
        ("add", "AWS::EC2::LaunchTemplate", "LaunchTemplate"),
        ("add", "AWS::AutoScaling::AutoScalingGroup", "WebHosts"),
        ("add", "AWS::CloudWatch::Alarm", "UnhealthyHostsAlarm"),
        ("add", "AWS::CloudWatch::Alarm", "LoadBalancer5xxAlarm"),
        ("add", "AWS::CloudWatch::Alarm", "Host5xxAlarm"),
        ("remove", "AWS::EC2::Instance", "Host"),
        ("modify", "AWS::EC2::SecurityGroup", "WebSecurityGroup"),  # port 80 from the load balancer only
        ("modify", "AWS::RDS::DBInstance", "DbInstance"),  # Multi-AZ
        ("modify", "AWS::IAM::Role", "HostRole"),  # may signal and read target health
    } == by_action
    assert "HttpsListener" not in printed  # no certificate: HTTP only
    assert "Plan: 9 to add, 1 to remove, 3 to modify." in printed
    # AND nothing changed: the host is still there, no load balancer exists
    assert cfn.describe_stack(single, clients) == host_before
    assert _client("elbv2").describe_load_balancers()["LoadBalancers"] == []


def test_the_cluster_needs_a_shared_database_and_hosts(
    clients: cfn.Clients, make_opts: Opts, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a cluster asked for with SQLite on each host, or with no hosts
    for params, reason in (
        ({"Database": "none"}, "needs one database every host shares"),
        ({"CreateInstance": "false"}, "runs the dashboard on EC2 hosts"),
    ):
        # WHEN planned, THEN it is refused before anything is uploaded or created
        with pytest.raises(cfn.DeployError, match=reason):
            cfn.plan(make_opts(WebTier="cluster", **params), clients, echo=Echo(), sleep=no_sleep)
    args = ["apply", "--stack", "demo", "--region", REGION, "--web-tier", "cluster", "--database", "none"]
    assert cli.main(args) == 1
    assert "needs one database every host shares" in capsys.readouterr().err
    assert cfn.describe_stack(make_opts(), clients) is None


def test_public_subnets_are_one_per_zone_and_need_two_zones(clients: cfn.Clients) -> None:
    ec2 = _client("ec2")
    # GIVEN the default VPC: its default subnets, the first two zones by name
    vpc, subnets = cfn.public_subnets(clients, "")
    default = _default_subnets()
    assert vpc == default[0]["VpcId"] and subnets == [default[0]["SubnetId"], default[1]["SubnetId"]]
    # GIVEN a VPC with a public subnet in one zone and a private one in another
    own = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    public = ec2.create_subnet(VpcId=own, CidrBlock="10.8.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]
    ec2.modify_subnet_attribute(SubnetId=public["SubnetId"], MapPublicIpOnLaunch={"Value": True})
    ec2.create_subnet(VpcId=own, CidrBlock="10.8.2.0/24", AvailabilityZone=f"{REGION}b")
    # THEN it has too few zones for the load balancer, and the operator is told what to pass
    with pytest.raises(cfn.DeployError, match="public subnets .* in 1 zone.*--lb-subnet-ids"):
        cfn.public_subnets(clients, own)


def test_what_moto_drops_is_in_the_template() -> None:
    """The load balancer's and target group's attributes, the group's policies and the alarms."""
    template = _template()
    resources, params = template["Resources"], template["Parameters"]
    # the WebSocket: idle connections live 300 s (Streamlit pings every 30 s), nginx 5 s longer
    lb_attrs = {
        a["Key"]: a["Value"] for a in resources["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]
    }
    assert lb_attrs["idle_timeout.timeout_seconds"] == {"Fn::Sub": "${LoadBalancerIdleTimeout}"}
    assert params["LoadBalancerIdleTimeout"]["Default"] == 300
    # stickiness: the load balancer's own cookie, a day by default
    tg_attrs = {a["Key"]: a["Value"] for a in resources["TargetGroup"]["Properties"]["TargetGroupAttributes"]}
    assert tg_attrs["stickiness.enabled"] == "true" and tg_attrs["stickiness.type"] == "lb_cookie"
    assert tg_attrs["stickiness.lb_cookie.duration_seconds"] == {"Fn::Sub": "${StickinessSeconds}"}
    assert params["StickinessSeconds"]["Default"] == 86400
    assert tg_attrs["deregistration_delay.timeout_seconds"] == "30"
    # rolling updates: one host at a time, each waiting for its healthy signal
    hosts = resources["WebHosts"]
    rolling = hosts["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert (rolling["MaxBatchSize"], rolling["MinInstancesInService"], rolling["WaitOnResourceSignals"]) == (
        1,
        1,
        True,
    )
    assert hosts["CreationPolicy"]["ResourceSignal"]["Count"] == {"Ref": "HostsDesired"}
    assert [params[p]["Default"] for p in ("HostsMin", "HostsDesired", "HostsMax")] == [2, 2, 2]
    assert params["WebTier"]["Default"] == "single" and params["SshCidr"]["Default"] == ""
    # alarms: each metric, each to the topic when there is an address
    alarms = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    metrics = {
        (p["Namespace"], p["MetricName"], p["ComparisonOperator"], p["Threshold"]) for p in alarms.values()
    }
    assert metrics == {
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "GreaterThanOrEqualToThreshold", 900),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "GreaterThanThreshold", 0),  # the DLQ
        ("AWS/RDS", "CPUUtilization", "GreaterThanOrEqualToThreshold", 80),
        ("AWS/RDS", "FreeStorageSpace", "LessThanThreshold", 2147483648),
        ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "GreaterThanOrEqualToThreshold", 5),
        ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "GreaterThanOrEqualToThreshold", 5),
        ("AWS/ApplicationELB", "UnHealthyHostCount", "GreaterThanOrEqualToThreshold", 1),
    }
    dlq = alarms["DeadLetterAlarm"]["Dimensions"][0]["Value"]
    assert dlq == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    for props in alarms.values():
        assert props["AlarmActions"] == {
            "Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]
        }
