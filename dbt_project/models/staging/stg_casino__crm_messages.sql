-- Message feedback: delivery, open, click, unsubscribe, complaint, bounce.
{{ config(materialized=read_by_crm_materialization()) }}
with message_events as (

    select
        *,
        {{ parse_payload({'delivery_id': 'VARCHAR', 'campaign_id': 'VARCHAR', 'channel': 'VARCHAR'}) }} as p
    from {{ ref('stg_casino__events') }}
    where {{ event_family('crm') }}

)

select
    {{ event_envelope() }},
    p.delivery_id,
    p.campaign_id,
    p.channel
from message_events
