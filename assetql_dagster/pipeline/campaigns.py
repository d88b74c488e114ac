"""The campaign profiles of the campaigns file named by $ASSETQL_CAMPAIGNS, checked against this
machine (batch settings, installed exporters), and looked up by the name a batch.yaml gives."""

from __future__ import annotations

import os
from pathlib import Path

from assetql_dagster.domain.campaigns import Campaign, CampaignError, campaign_settings, load_campaigns
from assetql_dagster.domain.errors import BatchValidationError, Problem
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.pipeline.exporters.registry import export_problems

CAMPAIGNS_ENV = "ASSETQL_CAMPAIGNS"


def check_campaign_settings(path: str, campaigns: list[Campaign]) -> None:
    """Raise CampaignError naming every campaign whose `settings` are not valid batch settings."""
    problems = []
    for campaign in campaigns:
        try:
            overrides = campaign_settings(campaign, path)
        except BatchValidationError as error:
            problems += [
                f"campaign {campaign.name!r}, field 'settings', setting '{p.column}': {p.message}"
                for p in error.problems
            ]
            continue
        # The exporters installed here, checked now rather than when the campaign is first applied.
        exports = {"exports": list(campaign.exports)} if campaign.exports else {}
        settings = BatchSettings(**{**overrides, **exports})
        for problem in export_problems(settings, path):
            field = "exports" if problem.column == "exports" and campaign.exports else f"settings', setting '{problem.column}"
            problems.append(f"campaign {campaign.name!r}, field '{field}': {problem.message}")
    if problems:
        raise CampaignError(path, problems)


def campaign_profiles(path: str | Path | None = None) -> dict[str, Campaign]:
    """The checked campaigns of `path` (default: $ASSETQL_CAMPAIGNS; none when unset) by name;
    raises CampaignError naming every invalid campaign and field."""
    path = path or os.environ.get(CAMPAIGNS_ENV)
    if not path:
        return {}
    campaigns = load_campaigns(path)
    check_campaign_settings(str(path), campaigns)
    return {campaign.name: campaign for campaign in campaigns}


def find_campaign(name: str, file: str) -> Campaign:
    """The campaign profile `name` of $ASSETQL_CAMPAIGNS; BatchValidationError at `file`'s `campaign`
    setting when the file is unset or invalid or has no such campaign, listing the known ones."""
    path = os.environ.get(CAMPAIGNS_ENV)
    if not path:
        message = (
            f"names campaign {name!r} but no campaigns file is configured; set ${CAMPAIGNS_ENV} to "
            "the campaigns file that declares it"
        )
        raise BatchValidationError([Problem(file, message, column="campaign")])
    try:
        profiles = campaign_profiles(path)
    except CampaignError as error:
        message = f"names campaign {name!r} but the campaigns file cannot be used: {error}"
        raise BatchValidationError([Problem(file, message, column="campaign")]) from None
    if name not in profiles:
        known = ", ".join(profiles) or "none"
        message = f"unknown campaign {name!r}; campaigns in {path}: {known}"
        raise BatchValidationError([Problem(file, message, column="campaign")])
    return profiles[name]
