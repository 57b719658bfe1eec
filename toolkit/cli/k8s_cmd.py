"""``spotkit k8s render``: the Kubernetes manifests a stack needs."""

from __future__ import annotations

import click

from spotkit.cli.context import CliContext, pass_ctx
from spotkit.k8s import render as render_domain
from spotkit.k8s import validate
from spotkit.output import emit_json


@click.group("k8s")
def k8s_group():
    """Kubernetes manifests for EKS GPU spot pools."""


@k8s_group.command("render")
@click.argument("stack")
@click.option("--out", "outdir", default="k8s.out", show_default=True, type=click.Path(file_okay=False),
              help="Write DIR/NN-<name>.yaml, one file per object, in apply order.")
@click.option("--file-system-id", help="EFS id for the StorageClass (terraform output efs_file_system_id).")
@click.option("--access-point-id", help="EFS access point id (terraform output efs_access_point_id).")
@pass_ctx
def render_command(ctx: CliContext, stack, outdir, file_system_id, access_point_id):
    """Write the NodePools, StorageClass, volume, claim and example training Job of STACK."""
    result = render_domain.render(stack, outdir, ctx.config, file_system_id=file_system_id,
                                   access_point_id=access_point_id)
    if ctx.json:
        emit_json(result)
        return
    click.echo(f"{stack}: {len(result.files)} manifests in {result.outdir}")
    for path, kind in zip(result.files, result.kinds):
        click.echo(f"  {kind:<22} {path}")
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"\nnext: kubectl apply -f {result.outdir}")


@k8s_group.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@pass_ctx
def check_command(ctx: CliContext, files):
    """Check the Jobs in FILES: spot toleration when they target spot, grace period within the notice;
    and the Karpenter NodePools in them: spot/on-demand mix and consolidation (SPOT016/017, warnings)."""
    from spotkit.check.nodepools import check_node_pool_files

    checked = validate.check_files(files)
    pools, warnings = check_node_pool_files(files)
    if ctx.json:
        emit_json({"checked": checked, "node_pools": pools, "warnings": warnings})
        return
    click.echo(f"ok: {len(checked)} Job(s) checked" + (f" ({', '.join(checked)})" if checked else ""))
    if pools:
        click.echo(f"{len(pools)} NodePool(s) checked ({', '.join(pools)}): {len(warnings)} warning(s)")
    for w in warnings:
        click.echo(f"WARNING  {w['rule_id']}  {w['resource']}  ({w['file']})\n         {w['message']}\n"
                   f"         fix: {w['fix']}\n         docs: {w['help_uri']}")


def register(group: click.Group) -> None:
    group.add_command(k8s_group)
