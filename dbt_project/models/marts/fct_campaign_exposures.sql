-- Exposures of past randomized campaigns, the training data of the uplift models: one row
-- per (campaign_id, player_id) sent before the run's as-of date, arm treatment | control
-- (other arm labels are left out), with the outcomes of fct_campaign_outcomes (the one
-- place their windows and completeness are defined) and the features as of the send.
--
-- Features: the player's feature snapshot as of the send day S (int_campaign_sends_featurized:
-- the spec's features from days before S only, so no feature sees the campaign; players
-- without activity in the 90 days before S are kept with zero activity). Every snapshot
-- column but the keys is selected (`s.* exclude`), so features added to the spec flow
-- through without touching this model. Only an assignment of a player not registered
-- before S has no snapshot and is dropped.
--
-- Outcomes (fct_campaign_outcomes; NULL while their window is incomplete):
--   deposited_7d     = converted_7d: a captured (or imported) deposit on a day in [S, S + 7)
--   ngr_eur_14d      : sum of ngr_eur (EUR cents) over days in [S, S + 14)
--   outcome_complete = outcome_14d_complete: every outcome is final.

select
    o.campaign_id,
    o.player_id,
    o.arm,
    o.treated,
    o.channel,
    o.sent_at,
    o.sent_date as features_as_of,
    o.converted_7d as deposited_7d,
    o.ngr_eur_14d,
    o.outcome_14d_complete as outcome_complete,
    {{ star_except('s', ['player_id', 'as_of_date', 'loaded_at']) }}
from {{ ref('fct_campaign_outcomes') }} as o
inner join {{ ref('int_campaign_sends_featurized') }} as s
    on s.player_id = o.player_id
    and s.as_of_date = o.sent_date
where o.arm in ('treatment', 'control')
