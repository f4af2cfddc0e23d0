-- Every change of a player's consent on a channel, numbered per (player, channel).
-- A change is consent.granted (-> true), consent.revoked (-> false), or message feedback
-- that withdraws the channel: crm.unsubscribe / crm.complaint (-> false). A withdrawal
-- holds until a later consent.granted. Product-level consents are kept on the row
-- (`product`) but the state is per channel: the latest change on the channel wins
-- (int_consents_by_product keeps the state per product).
-- A withdrawal that named no channel of ours (landed with channel '*', crm.contract.ALL_CHANNELS)
-- is a change on every channel, profiling included: it fails closed.
{% set as_of = run_as_of_date() %}

with consent_events as (

    select
        event_id,
        player_id,
        channel,
        product,
        occurred_at,
        event_type,
        is_granted
    from {{ ref('stg_casino__consents') }}
    where occurred_at < {{ as_of }}

),

feedback_withdrawals as (

    select
        event_id,
        player_id,
        channel,
        cast(null as {{ dbt.type_string() }}) as product,
        occurred_at,
        event_type,
        false as is_granted
    from {{ ref('stg_casino__crm_messages') }}
    where event_type in ('crm.unsubscribe', 'crm.complaint')
      and occurred_at < {{ as_of }}

),

consent_changes as (

    select
        event_id,
        player_id,
        {{ unnest_array("case when channel = '*' then " ~ string_array(consent_channels()) ~ " else " ~ array_of(['channel']) ~ " end") }} as channel,
        product,
        occurred_at,
        event_type,
        is_granted
    from (
        select * from consent_events
        union all
        select * from feedback_withdrawals
    )

),

versioned as (

    select
        event_id,
        player_id,
        channel,
        product,
        occurred_at as changed_at,
        event_type as change_source,
        is_granted as consent_state,
        -- at the same instant a withdrawal sorts after a grant: the safe state wins
        row_number() over per_channel as consent_version,
        count(*) over (partition by player_id, channel) as versions_on_channel
    from consent_changes
    window per_channel as (
        partition by player_id, channel
        order by occurred_at, is_granted desc, event_id
    )

)

select
    event_id,
    player_id,
    channel,
    product,
    changed_at,
    change_source,
    consent_state,
    cast(consent_version as integer) as consent_version,
    consent_version = versions_on_channel as is_current
from versioned
